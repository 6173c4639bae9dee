//! watermark: text and image marks.
//!
//! A mark is first drawn on its own premultiplied RGBA layer (text, shadow, rotation or a
//! decoded image), then composited src-over at its gravity position, or tiled with `fill`.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontVec, OutlinedGlyph, PxScale, ScaleFont};
use image::{DynamicImage, RgbaImage};

use super::OpContext;
use crate::error::{Error, Result};
use crate::spec::{Gravity, ImageMark, TextMark, Watermark, WatermarkContent};

const ZENHEI: &str = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
const MICROHEI: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

pub(super) fn apply(
    image: DynamicImage,
    mark: &Watermark,
    ctx: &OpContext<'_>,
) -> Result<DynamicImage> {
    let (bw, bh) = (image.width(), image.height());
    // Built even at t_0 so that a bad mark fails the same way whatever the opacity.
    let (layer, fill) = match &mark.content {
        WatermarkContent::Text(t) => (render_text(t)?, t.fill),
        WatermarkContent::Image(m) => (load_image(m, bw, ctx)?, false),
    };
    if mark.opacity == 0 || layer.w == 0 || layer.h == 0 {
        return Ok(image);
    }
    let opacity = mark.opacity as f32 / 100.0;
    let mut image = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let (px, py) = position(mark, bw, bh, layer.w, layer.h);
    if !fill {
        composite(&mut image, &layer, px, py, opacity);
        return Ok(image);
    }
    // Tiles keep the placed mark where it would be alone and repeat it in every direction.
    let gap = i64::from(layer.w.max(layer.h) / 4 + 10);
    let (step_x, step_y) = (i64::from(layer.w) + gap, i64::from(layer.h) + gap);
    let mut y = py.rem_euclid(step_y) - step_y;
    while y < i64::from(bh) {
        let mut x = px.rem_euclid(step_x) - step_x;
        while x < i64::from(bw) {
            composite(&mut image, &layer, x, y, opacity);
            x += step_x;
        }
        y += step_y;
    }
    Ok(image)
}

/// Top-left corner of a `w`×`h` mark: margins count from the nearest edges, `voffset`
/// moves the middle row (positive = down, as image rows grow downwards).
fn position(mark: &Watermark, bw: u32, bh: u32, w: u32, h: u32) -> (i64, i64) {
    let g = mark.gravity;
    let (mut x, mut y) = g.origin(bw, bh, w, h);
    let (mx, my) = (i64::from(mark.x), i64::from(mark.y));
    if g.is_east() {
        x -= mx;
    } else if matches!(g, Gravity::NorthWest | Gravity::West | Gravity::SouthWest) {
        x += mx;
    }
    if g.is_south() {
        y -= my;
    } else if matches!(g, Gravity::NorthWest | Gravity::North | Gravity::NorthEast) {
        y += my;
    } else {
        y += i64::from(mark.voffset);
    }
    (x, y)
}

/// A mark as premultiplied RGBA in 0..=1: blending and resampling need no special cases.
struct Layer {
    w: u32,
    h: u32,
    px: Vec<[f32; 4]>,
}

impl Layer {
    fn new(w: u32, h: u32) -> Layer {
        Layer {
            w,
            h,
            px: vec![[0.0; 4]; w as usize * h as usize],
        }
    }

    fn from_rgba(img: &RgbaImage) -> Layer {
        let px = img
            .pixels()
            .map(|p| {
                let a = f32::from(p[3]) / 255.0;
                let c = |i: usize| f32::from(p[i]) / 255.0 * a;
                [c(0), c(1), c(2), a]
            })
            .collect();
        Layer {
            w: img.width(),
            h: img.height(),
            px,
        }
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let inside = (0..i64::from(self.w)).contains(&x) && (0..i64::from(self.h)).contains(&y);
        inside.then(|| y as usize * self.w as usize + x as usize)
    }

    /// Transparent outside the layer.
    fn get(&self, x: i64, y: i64) -> [f32; 4] {
        self.index(x, y).map_or([0.0; 4], |i| self.px[i])
    }

    /// Paints `rgb` with coverage `a` over what is there.
    fn paint(&mut self, x: i64, y: i64, rgb: [f32; 3], a: f32) {
        let Some(i) = self.index(x, y).filter(|_| a > 0.0) else {
            return;
        };
        let p = &mut self.px[i];
        let keep = 1.0 - a;
        for i in 0..3 {
            p[i] = rgb[i] * a + p[i] * keep;
        }
        p[3] = a + p[3] * keep;
    }
}

/// Each font file is read and parsed once per process; only successes are kept, so
/// installing a missing font later works without a restart.
fn load_font(name: &str) -> Result<&'static FontVec> {
    static FONTS: [OnceLock<FontVec>; 2] = [OnceLock::new(), OnceLock::new()];
    let (slot, path) = if name == "wqy-microhei" && std::path::Path::new(MICROHEI).exists() {
        (&FONTS[1], MICROHEI)
    } else {
        (&FONTS[0], ZENHEI)
    };
    if let Some(font) = slot.get() {
        return Ok(font);
    }
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Encode(format!(
            "watermark: font file {path} not installed ({e}); run scripts/setup-debian.sh"
        ))
    })?;
    // Index 0: both files are TrueType collections.
    let font = FontVec::try_from_vec_and_index(bytes, 0)
        .map_err(|e| Error::Encode(format!("watermark: font file {path} is unusable: {e}")))?;
    Ok(slot.get_or_init(|| font))
}

/// One line of text in its box (advance width × line height, grown to any overhanging
/// ink), with the shadow `size/20` px down-right under it, then turned clockwise.
fn render_text(t: &TextMark) -> Result<Layer> {
    let font = load_font(&t.font)?;
    let scale = PxScale::from(t.size as f32);
    let scaled = font.as_scaled(scale);
    let (mut caret, mut prev) = (0.0f32, None);
    let mut glyphs: Vec<OutlinedGlyph> = Vec::new();
    for ch in t.text.chars().filter(|c| !c.is_control()) {
        let id = font.glyph_id(ch);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, point(caret, scaled.ascent()));
        glyphs.extend(font.outline_glyph(glyph));
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    let (mut x0, mut y0) = (0.0f32, 0.0f32);
    let (mut x1, mut y1) = (caret, scaled.ascent() - scaled.descent());
    for b in glyphs.iter().map(OutlinedGlyph::px_bounds) {
        (x0, y0) = (x0.min(b.min.x), y0.min(b.min.y));
        (x1, y1) = (x1.max(b.max.x), y1.max(b.max.y));
    }
    let (x0, y0) = (x0.floor(), y0.floor());
    let shadow = i64::from(t.shadow > 0) * (t.size as f32 / 20.0).round().max(1.0) as i64;
    let w = (x1 - x0).ceil() as u32 + shadow as u32;
    let h = (y1 - y0).ceil() as u32 + shadow as u32;
    let mut layer = Layer::new(w, h);
    let mut draw = |offset: i64, rgb: [f32; 3], alpha: f32| {
        for g in &glyphs {
            let b = g.px_bounds();
            let (gx, gy) = (
                (b.min.x - x0) as i64 + offset,
                (b.min.y - y0) as i64 + offset,
            );
            g.draw(|x, y, c| layer.paint(gx + i64::from(x), gy + i64::from(y), rgb, c * alpha));
        }
    };
    if shadow > 0 {
        draw(shadow, [0.0; 3], t.shadow as f32 / 100.0);
    }
    draw(0, t.color.map(|c| f32::from(c) / 255.0), 1.0);
    Ok(match t.rotate {
        0 => layer,
        degrees => rotate(&layer, degrees),
    })
}

/// Turns the layer `degrees` clockwise onto a canvas that holds all of it (bilinear).
fn rotate(layer: &Layer, degrees: u32) -> Layer {
    let (s, c) = (degrees as f32).to_radians().sin_cos();
    let (w, h) = (layer.w as f32, layer.h as f32);
    // The epsilon keeps 90° turns from gaining a column to rounding error.
    let nw = (w * c.abs() + h * s.abs() - 1e-3).ceil().max(1.0) as u32;
    let nh = (w * s.abs() + h * c.abs() - 1e-3).ceil().max(1.0) as u32;
    let mut out = Layer::new(nw, nh);
    let (ncx, ncy) = (nw as f32 / 2.0, nh as f32 / 2.0);
    for y in 0..nh {
        for x in 0..nw {
            let (dx, dy) = (x as f32 + 0.5 - ncx, y as f32 + 0.5 - ncy);
            // Inverse map: where in the source this output pixel came from.
            let sx = dx * c + dy * s + w / 2.0 - 0.5;
            let sy = -dx * s + dy * c + h / 2.0 - 0.5;
            let (fx, fy) = (sx.floor(), sy.floor());
            let (tx, ty) = (sx - fx, sy - fy);
            let (ix, iy) = (fx as i64, fy as i64);
            let mut p = [0.0f32; 4];
            for (ox, oy, wt) in [
                (0, 0, (1.0 - tx) * (1.0 - ty)),
                (1, 0, tx * (1.0 - ty)),
                (0, 1, (1.0 - tx) * ty),
                (1, 1, tx * ty),
            ] {
                let q = layer.get(ix + ox, iy + oy);
                for i in 0..4 {
                    p[i] += q[i] * wt;
                }
            }
            out.px[y as usize * nw as usize + x as usize] = p;
        }
    }
    out
}

/// The image mark, scaled so its width is `percent` % of the base image's width.
fn load_image(m: &ImageMark, base_w: u32, ctx: &OpContext<'_>) -> Result<Layer> {
    let limits = &ctx.settings.limits;
    let bytes = ctx.marks.get(&m.path)?;
    let header = super::codec::probe(bytes)?;
    limits.check_source(header.width, header.height, header.frames)?;
    let mut img = super::codec::decode(bytes, &header, Default::default())?.image;
    if let Some(p) = m.percent {
        let w = (u64::from(base_w) * u64::from(p) / 100).max(1);
        let h = (u64::from(img.height()) * w / u64::from(img.width().max(1))).max(1);
        limits.check_output(w, h)?;
        img = super::resize::resample(img, w as u32, h as u32)?;
    }
    Ok(Layer::from_rgba(&img.to_rgba8()))
}

/// Src-over of `layer` at (`left`, `top`) scaled by `opacity`; parts outside are clipped.
fn composite(image: &mut DynamicImage, layer: &Layer, left: i64, top: i64, opacity: f32) {
    let x_from = left.max(0);
    let y_from = top.max(0);
    let x_to = (left + i64::from(layer.w)).min(i64::from(image.width()));
    let y_to = (top + i64::from(layer.h)).min(i64::from(image.height()));
    let to_u8 = |v: f32| (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
    for y in y_from..y_to {
        for x in x_from..x_to {
            let s = layer.get(x - left, y - top).map(|v| v * opacity);
            if s[3] <= 0.0 {
                continue;
            }
            let (ux, uy) = (x as u32, y as u32);
            match image {
                DynamicImage::ImageRgb8(img) => {
                    let d = img.get_pixel_mut(ux, uy);
                    for i in 0..3 {
                        d[i] = to_u8(s[i] + f32::from(d[i]) / 255.0 * (1.0 - s[3]));
                    }
                }
                DynamicImage::ImageRgba8(img) => {
                    let d = img.get_pixel_mut(ux, uy);
                    let da = f32::from(d[3]) / 255.0 * (1.0 - s[3]);
                    let out_a = s[3] + da;
                    for i in 0..3 {
                        d[i] = to_u8((s[i] + f32::from(d[i]) / 255.0 * da) / out_a);
                    }
                    d[3] = to_u8(out_a);
                }
                _ => unreachable!("apply converts the base to RGB8 or RGBA8"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Marks, Settings};
    use crate::spec::{encode_base64, Op, Spec};

    fn parse(spec: &str) -> Watermark {
        match &Spec::parse(spec, &Default::default()).unwrap().ops[0] {
            Op::Watermark(w) => (**w).clone(),
            other => panic!("not a watermark: {other:?}"),
        }
    }

    fn text(t: &str, rest: &str) -> Watermark {
        let hint = "is missing: run scripts/setup-debian.sh";
        assert!(std::path::Path::new(ZENHEI).exists(), "{ZENHEI} {hint}");
        parse(&format!("watermark,text_{}{rest}", encode_base64(t)))
    }

    fn plain(w: u32, h: u32, v: u8) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb([v; 3])))
    }

    fn run(image: &DynamicImage, mark: &Watermark) -> DynamicImage {
        let settings = Settings::default();
        let ctx = OpContext {
            settings: &settings,
            marks: &Marks::default(),
            output_alpha: false,
        };
        apply(image.clone(), mark, &ctx).unwrap()
    }

    /// Coordinates of the pixels a text mark changes on a grey `w`×`h` image.
    fn marked(w: u32, h: u32, t: &str, rest: &str) -> Vec<(u32, u32)> {
        let base = plain(w, h, 128);
        let (a, b) = (base.to_rgb8(), run(&base, &text(t, rest)).to_rgb8());
        let pixels = a
            .enumerate_pixels()
            .filter(|(x, y, p)| *p != b.get_pixel(*x, *y));
        pixels.map(|(x, y, _)| (x, y)).collect()
    }

    /// Bounding box (x0, y0, x1, y1) of the changes.
    fn bbox(c: &[(u32, u32)]) -> (u32, u32, u32, u32) {
        let (xs, ys) = (c.iter().map(|p| p.0), c.iter().map(|p| p.1));
        let (x0, y0) = (xs.clone().min().unwrap(), ys.clone().min().unwrap());
        (x0, y0, xs.max().unwrap(), ys.max().unwrap())
    }

    #[test]
    fn text_mark_changes_only_its_corner() {
        let c = marked(200, 200, "Hello", ",size_20");
        assert!(!c.is_empty());
        let near_se = |&(x, y): &(u32, u32)| (100..190).contains(&x) && (150..190).contains(&y);
        assert!(c.iter().all(near_se), "{c:?}");
    }

    #[test]
    fn cjk_text_renders() {
        assert_ne!(load_font("wqy-zenhei").unwrap().glyph_id('水').0, 0);
        let font = format!(",type_{}", encode_base64("wqy-microhei"));
        assert!(marked(200, 100, "水印", &format!(",size_40,color_FF0000{font}")).len() > 50);
    }

    #[test]
    fn zero_opacity_changes_nothing() {
        assert!(marked(100, 100, "Hi", ",t_0").is_empty());
    }

    #[test]
    fn gravity_picks_the_quadrant() {
        let nw = marked(200, 200, "Hi", ",size_30,g_nw");
        assert!(!nw.is_empty() && nw.iter().all(|&(x, y)| x < 100 && y < 100));
        let (x0, y0, ..) = bbox(&nw);
        assert!(
            (10..14).contains(&x0) && (10..20).contains(&y0),
            "{x0},{y0}"
        );
        let se = marked(200, 200, "Hi", ",size_30,g_se");
        assert!(!se.is_empty() && se.iter().all(|&(x, y)| x >= 100 && y >= 100));
        let center = marked(200, 200, "Hi", ",size_30,g_center,voffset_50");
        assert!(!center.is_empty() && center.iter().all(|&(_, y)| y > 100));
    }

    #[test]
    fn fill_covers_all_quadrants() {
        let c = marked(400, 400, "Mark", ",size_20,fill_1");
        for (qx, qy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let hit = c.iter().any(|&(x, y)| x / 200 == qx && y / 200 == qy);
            assert!(hit, "quadrant {qx},{qy}");
        }
    }

    #[test]
    fn rotate_turns_the_text() {
        let flat = bbox(&marked(300, 300, "ABCDEFGH", ",size_20,g_center"));
        assert!(flat.2 - flat.0 > 2 * (flat.3 - flat.1), "{flat:?}");
        let up = bbox(&marked(300, 300, "ABCDEFGH", ",size_20,g_center,rotate_90"));
        assert!(up.3 - up.1 > 2 * (up.2 - up.0), "{up:?}");
    }

    #[test]
    fn shadow_darkens_and_big_marks_are_clipped() {
        let mark = text("Hi", ",size_40,color_FFFFFF,shadow_100");
        let out = run(&plain(100, 100, 128), &mark).to_rgb8();
        assert!(out.pixels().any(|p| p[0] < 100) && out.pixels().any(|p| p[0] > 200));
        run(&plain(20, 20, 128), &text("Large", ",size_200"));
    }

    /// Applies an image mark where the marks read are one 10×10 red `mark.png`.
    fn image_mark(path: &str, rest: &str, base: DynamicImage) -> Result<DynamicImage> {
        let red = image::RgbaImage::from_pixel(10, 10, image::Rgba([255, 0, 0, 255]));
        let mut png = Vec::new();
        red.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut marks = Marks::default();
        marks.insert("mark.png".into(), png);
        let settings = Settings::default();
        let ctx = OpContext {
            settings: &settings,
            marks: &marks,
            output_alpha: false,
        };
        let mark = parse(&format!("watermark,image_{}{rest}", encode_base64(path)));
        apply(base, &mark, &ctx)
    }

    #[test]
    fn image_mark_is_composited_in_place() {
        let out = image_mark("mark.png", ",g_nw,x_5,y_7", plain(100, 100, 255)).unwrap();
        let out = out.to_rgb8();
        assert_eq!(out.get_pixel(5, 7).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(14, 16).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(4, 7).0, [255; 3]);
        assert_eq!(out.get_pixel(15, 17).0, [255; 3]);
        let half = image_mark("mark.png", ",t_50,x_0,y_0", plain(100, 100, 255)).unwrap();
        assert_eq!(half.to_rgb8().get_pixel(99, 99).0, [255, 128, 128]);
        assert_eq!(half.to_rgb8().get_pixel(89, 89).0, [255; 3]);
    }

    #[test]
    fn image_mark_keeps_an_alpha_base() {
        let clear = DynamicImage::ImageRgba8(image::RgbaImage::new(50, 50));
        let out = image_mark("mark.png", ",g_nw,x_0,y_0", clear).unwrap();
        let out = out.as_rgba8().expect("stays RGBA");
        assert_eq!(out.get_pixel(0, 0).0, [255, 0, 0, 255]);
        assert_eq!(out.get_pixel(20, 20).0, [0; 4]);
    }

    #[test]
    fn image_mark_percent_scales_to_the_base() {
        let path = "mark.png?x-oss-process=image/resize,P_50";
        let out = image_mark(path, ",g_nw,x_0,y_0", plain(100, 100, 255)).unwrap();
        let p = out.to_rgb8().get_pixel(49, 49).0;
        assert!(p[0] > 250 && p[1] < 5 && p[2] < 5, "{p:?}");
        assert_eq!(out.to_rgb8().get_pixel(50, 50).0, [255; 3]);
    }

    #[test]
    fn an_image_mark_that_was_not_read_is_not_found() {
        let err = image_mark("other.png", "", plain(50, 50, 128)).unwrap_err();
        assert_eq!(err.errno(), libc::ENOENT);
    }
}
