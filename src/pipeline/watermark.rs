//! watermark: text and image marks.
//!
//! A mark is first drawn on its own layer, then composited src-over at its gravity position,
//! or tiled with `fill`. A text layer is one byte of coverage per pixel (and a second for
//! the shadow), as its colours are constant; an image layer is premultiplied RGBA8. Before
//! anything is drawn or decoded, [`plan_text`] and [`plan_image`] tell the layer's size from
//! the font's metrics or the mark's header, so the limits and the memory estimate know it.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontVec, OutlinedGlyph, PxScale, ScaleFont};
use image::{DynamicImage, RgbaImage};

use super::codec::Header;
use super::OpContext;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::spec::{Gravity, ImageMark, TextMark, Watermark, WatermarkContent};

const ZENHEI: &str = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
const MICROHEI: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

pub(super) fn apply(
    image: DynamicImage,
    mark: &Watermark,
    ctx: &OpContext<'_>,
) -> Result<DynamicImage> {
    let (bw, bh) = (image.width(), image.height());
    let limits = &ctx.settings.limits;
    // Built even at t_0 so that a bad mark fails the same way whatever the opacity.
    let (layer, fill) = match &mark.content {
        WatermarkContent::Text(t) => {
            let layout = layout_text(t)?;
            layout.plan(t.rotate).check(limits)?;
            (render_text(t, &layout), t.fill)
        }
        WatermarkContent::Image(m) => (load_image(m, bw, ctx)?, false),
    };
    let (lw, lh) = layer.size();
    if mark.opacity == 0 || lw == 0 || lh == 0 {
        return Ok(image);
    }
    let opacity = mark.opacity as f32 / 100.0;
    let mut image = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let (px, py) = position(mark, bw, bh, lw, lh);
    if !fill {
        composite(&mut image, &layer, px, py, opacity);
        return Ok(image);
    }
    // Tiles keep the placed mark where it would be alone and repeat it in every direction.
    let gap = i64::from(lw.max(lh) / 4 + 10);
    let (step_x, step_y) = (i64::from(lw) + gap, i64::from(lh) + gap);
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

/// A mark's layer as it will be, known before any pixel is drawn or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerPlan {
    Text {
        /// The text's box, shadow included, as drawn.
        drawn: (u64, u64),
        /// `drawn` turned by `rotate` (the same when not rotated).
        placed: (u64, u64),
        /// Coverage planes of one byte per pixel: the glyphs, and with a shadow, both together.
        planes: u64,
        /// Pixels of the largest glyph's box: the rasteriser's scratch, one f32 each.
        largest_glyph: u64,
    },
    Image {
        /// The mark's file as stored.
        decoded: (u64, u64),
        /// After `P_n` scaling (the same without it).
        placed: (u64, u64),
    },
}

impl LayerPlan {
    /// Every layer the mark holds is within the output limits.
    pub fn check(&self, limits: &Limits) -> Result<()> {
        match *self {
            LayerPlan::Text { drawn, placed, .. } => {
                limits.check_layer(drawn.0, drawn.1)?;
                limits.check_layer(placed.0, placed.1)
            }
            // The decoded file is bounded by the source limits (checked from its header).
            LayerPlan::Image { placed, .. } => limits.check_layer(placed.0, placed.1),
        }
    }
}

/// The image mark's layer: its header's size, or `percent` % of the base width with the
/// mark's aspect ratio.
pub(crate) fn plan_image(m: &ImageMark, base_w: u32, header: &Header) -> LayerPlan {
    let decoded = (u64::from(header.width), u64::from(header.height));
    let placed = match m.percent {
        None => decoded,
        Some(p) => {
            let w = (u64::from(base_w) * u64::from(p) / 100).max(1);
            let h = (decoded.1.saturating_mul(w) / decoded.0.max(1)).max(1);
            (w, h)
        }
    };
    LayerPlan::Image { decoded, placed }
}

/// The text mark's layer, from the font's metrics (glyph outlines are laid out, not drawn).
pub(crate) fn plan_text(t: &TextMark) -> Result<LayerPlan> {
    Ok(layout_text(t)?.plan(t.rotate))
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

/// One line of text laid out: its glyph outlines and the box they are drawn in.
struct TextLayout {
    glyphs: Vec<OutlinedGlyph>,
    /// The box's top-left corner in the glyphs' coordinates.
    origin: (f32, f32),
    /// The box, shadow included.
    size: (u32, u32),
    /// The shadow's offset down-right, 0 without a shadow.
    shadow: u32,
}

/// The text's box is its advance width × line height, grown to any overhanging ink, and by
/// the shadow `size/20` px down-right under it.
fn layout_text(t: &TextMark) -> Result<TextLayout> {
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
    let shadow = u32::from(t.shadow > 0) * (t.size as f32 / 20.0).round().max(1.0) as u32;
    Ok(TextLayout {
        size: (
            (x1 - x0).ceil() as u32 + shadow,
            (y1 - y0).ceil() as u32 + shadow,
        ),
        origin: (x0, y0),
        glyphs,
        shadow,
    })
}

impl TextLayout {
    fn plan(&self, rotate: u32) -> LayerPlan {
        let drawn = (u64::from(self.size.0), u64::from(self.size.1));
        let largest_glyph = self.glyphs.iter().map(|g| {
            let b = g.px_bounds();
            (b.width() as u64 + 1) * (b.height() as u64 + 1)
        });
        LayerPlan::Text {
            drawn,
            placed: rotated_size(drawn, rotate),
            planes: 1 + u64::from(self.shadow > 0),
            largest_glyph: largest_glyph.max().unwrap_or(0),
        }
    }
}

/// One byte of coverage per pixel (0 = none, 255 = full).
struct Mask {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Mask {
    fn new(w: u32, h: u32) -> Mask {
        Mask {
            w,
            h,
            px: vec![0; w as usize * h as usize],
        }
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let inside = (0..i64::from(self.w)).contains(&x) && (0..i64::from(self.h)).contains(&y);
        inside.then(|| y as usize * self.w as usize + x as usize)
    }

    /// Coverage in 0..=1; none outside the mask.
    fn get(&self, x: i64, y: i64) -> f32 {
        self.index(x, y)
            .map_or(0.0, |i| f32::from(self.px[i]) / 255.0)
    }

    /// Adds coverage `a` over what is there (as src-over does for alpha).
    fn paint(&mut self, x: i64, y: i64, a: f32) {
        let Some(i) = self.index(x, y).filter(|_| a > 0.0) else {
            return;
        };
        let old = f32::from(self.px[i]) / 255.0;
        self.px[i] = to_u8(a.min(1.0) + old * (1.0 - a.min(1.0)));
    }
}

/// A mark ready to composite.
enum Layer {
    /// Glyphs of one colour over their shadow (black). Both planes are linear in the
    /// premultiplied colour, so turning them one by one is turning the mark.
    Text {
        color: [f32; 3],
        /// The glyphs' coverage.
        ink: Mask,
        /// The glyphs' and the shadow's coverage together; None without a shadow (the ink's).
        cover: Option<Mask>,
    },
    /// Premultiplied RGBA.
    Image(RgbaImage),
}

impl Layer {
    fn size(&self) -> (u32, u32) {
        match self {
            Layer::Text { ink, .. } => (ink.w, ink.h),
            Layer::Image(img) => img.dimensions(),
        }
    }

    /// The premultiplied RGBA in 0..=1 at (`x`, `y`), inside the layer.
    fn premultiplied(&self, x: u32, y: u32) -> [f32; 4] {
        match self {
            Layer::Text { color, ink, cover } => {
                let (x, y) = (i64::from(x), i64::from(y));
                let a = ink.get(x, y);
                let alpha = cover.as_ref().map_or(a, |c| c.get(x, y));
                [color[0] * a, color[1] * a, color[2] * a, alpha]
            }
            Layer::Image(img) => img.get_pixel(x, y).0.map(|v| f32::from(v) / 255.0),
        }
    }
}

fn to_u8(v: f32) -> u8 {
    (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// Draws the laid-out text (and its shadow `size/20` px down-right under it), then turns it
/// `rotate` degrees clockwise.
fn render_text(t: &TextMark, layout: &TextLayout) -> Layer {
    let (w, h) = layout.size;
    let draw = |offset: u32, alpha: f32| {
        let mut mask = Mask::new(w, h);
        for g in &layout.glyphs {
            let b = g.px_bounds();
            let (gx, gy) = (
                (b.min.x - layout.origin.0) as i64 + i64::from(offset),
                (b.min.y - layout.origin.1) as i64 + i64::from(offset),
            );
            g.draw(|x, y, c| mask.paint(gx + i64::from(x), gy + i64::from(y), c * alpha));
        }
        mask
    };
    let turn = |mask: Mask| match t.rotate {
        0 => mask,
        degrees => rotate(&mask, degrees),
    };
    let ink = draw(0, 1.0);
    let cover = (layout.shadow > 0).then(|| {
        let mut cover = draw(layout.shadow, t.shadow as f32 / 100.0);
        for (c, &a) in cover.px.iter_mut().zip(&ink.px) {
            let a = f32::from(a) / 255.0;
            *c = to_u8(a + f32::from(*c) / 255.0 * (1.0 - a));
        }
        cover
    });
    // One plane at a time: the unturned cover waits while the ink turns, then turns alone.
    let ink = turn(ink);
    Layer::Text {
        color: t.color.map(|c| f32::from(c) / 255.0),
        ink,
        cover: cover.map(turn),
    }
}

/// The canvas that holds a `w`×`h` layer turned `degrees`.
fn rotated_size((w, h): (u64, u64), degrees: u32) -> (u64, u64) {
    if degrees.is_multiple_of(360) {
        return (w, h);
    }
    let (s, c) = f64::from(degrees).to_radians().sin_cos();
    let (w, h) = (w as f64, h as f64);
    // The epsilon keeps 90° turns from gaining a column to rounding error.
    let side = |v: f64| (v - 1e-3).ceil().max(1.0) as u64;
    (
        side(w * c.abs() + h * s.abs()),
        side(w * s.abs() + h * c.abs()),
    )
}

/// Turns the mask `degrees` clockwise onto a canvas that holds all of it (bilinear).
fn rotate(mask: &Mask, degrees: u32) -> Mask {
    let (nw, nh) = rotated_size((u64::from(mask.w), u64::from(mask.h)), degrees);
    // Within the limits (checked from the plan), so within u32.
    let mut out = Mask::new(nw as u32, nh as u32);
    let (s, c) = (degrees as f32).to_radians().sin_cos();
    let (w, h) = (mask.w as f32, mask.h as f32);
    let (ncx, ncy) = (nw as f32 / 2.0, nh as f32 / 2.0);
    for (i, p) in out.px.iter_mut().enumerate() {
        let (x, y) = ((i % nw as usize) as f32, (i / nw as usize) as f32);
        let (dx, dy) = (x + 0.5 - ncx, y + 0.5 - ncy);
        // Inverse map: where in the source this output pixel came from.
        let sx = dx * c + dy * s + w / 2.0 - 0.5;
        let sy = -dx * s + dy * c + h / 2.0 - 0.5;
        let (fx, fy) = (sx.floor(), sy.floor());
        let (tx, ty) = (sx - fx, sy - fy);
        let (ix, iy) = (fx as i64, fy as i64);
        let a = mask.get(ix, iy) * (1.0 - tx) * (1.0 - ty)
            + mask.get(ix + 1, iy) * tx * (1.0 - ty)
            + mask.get(ix, iy + 1) * (1.0 - tx) * ty
            + mask.get(ix + 1, iy + 1) * tx * ty;
        *p = to_u8(a);
    }
    out
}

/// The image mark, scaled so its width is `percent` % of the base image's width.
fn load_image(m: &ImageMark, base_w: u32, ctx: &OpContext<'_>) -> Result<Layer> {
    let limits = &ctx.settings.limits;
    let bytes = ctx.marks.get(&m.path)?;
    let header = super::codec::probe(bytes)?;
    limits.check_source(header.width, header.height, header.frames)?;
    let plan = plan_image(m, base_w, &header);
    plan.check(limits)?;
    let mut img = super::codec::decode(bytes, &header, Default::default())?.image;
    if let LayerPlan::Image { placed, decoded } = plan {
        if placed != decoded {
            // Within the limits (checked above), so within u32.
            img = super::resize::resample(img, placed.0 as u32, placed.1 as u32)?;
        }
    }
    // In place: the layer is the decoded (or scaled) frame, not a copy of it.
    let mut rgba = img.into_rgba8();
    for p in rgba.pixels_mut() {
        let a = u16::from(p[3]);
        for c in &mut p.0[..3] {
            *c = ((u16::from(*c) * a + 127) / 255) as u8;
        }
    }
    Ok(Layer::Image(rgba))
}

/// Src-over of `layer` at (`left`, `top`) scaled by `opacity`; parts outside are clipped.
fn composite(image: &mut DynamicImage, layer: &Layer, left: i64, top: i64, opacity: f32) {
    let (lw, lh) = layer.size();
    let x_from = left.max(0);
    let y_from = top.max(0);
    let x_to = (left + i64::from(lw)).min(i64::from(image.width()));
    let y_to = (top + i64::from(lh)).min(i64::from(image.height()));
    for y in y_from..y_to {
        for x in x_from..x_to {
            let s = layer
                .premultiplied((x - left) as u32, (y - top) as u32)
                .map(|v| v * opacity);
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

    /// 64 CJK characters, the longest text a mark may have.
    fn long_text() -> String {
        "水".repeat(64)
    }

    fn too_large(result: Result<DynamicImage>) -> String {
        match result {
            Err(e @ Error::TooLarge(_)) => e.to_string(),
            Err(e) => panic!("not EFBIG: {e}"),
            Ok(_) => panic!("succeeded"),
        }
    }

    #[test]
    fn hostile_text_marks_are_efbig_before_drawing() {
        let settings = Settings::default();
        let ctx = OpContext {
            settings: &settings,
            marks: &Marks::default(),
            output_alpha: false,
        };
        let started = std::time::Instant::now();
        for (base, rest) in [
            (400, ",size_200,rotate_45"),
            (400, ",size_400,rotate_45"),
            (400, ",size_1000,rotate_45,shadow_100,fill_1"),
            (1, ",size_1000"),
        ] {
            let mark = text(&long_text(), rest);
            let message = too_large(apply(plain(base, base, 128), &mark, &ctx));
            assert!(message.contains("watermark layer") && message.contains("16384"));
        }
        // Drawing any of them took seconds and gigabytes; the plans take milliseconds.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn the_plan_is_the_layer_drawn() {
        for rest in [
            ",size_40",
            ",size_100,rotate_45",
            ",size_30,rotate_90,shadow_50",
            ",size_25,rotate_333,shadow_100,fill_1",
        ] {
            let WatermarkContent::Text(t) = text("Mark 水印", rest).content else {
                unreachable!()
            };
            let layout = layout_text(&t).unwrap();
            let LayerPlan::Text { placed, planes, .. } = layout.plan(t.rotate) else {
                unreachable!()
            };
            let Layer::Text { ink, cover, .. } = render_text(&t, &layout) else {
                unreachable!()
            };
            assert_eq!((u64::from(ink.w), u64::from(ink.h)), placed, "{rest}");
            let drawn_planes = 1 + cover.as_ref().map_or(0, |c| {
                assert_eq!((c.w, c.h), (ink.w, ink.h));
                1
            });
            assert_eq!(planes, drawn_planes, "{rest}");
        }
    }

    /// A PNG that only claims to be `w`×`h`: its header is all the plan may read.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
                }
            }
            !crc
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            let body = [kind, data].concat();
            png.extend((data.len() as u32).to_be_bytes());
            png.extend(&body);
            png.extend(crc32(&body).to_be_bytes());
        };
        let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 6, 0, 0, 0]].concat();
        chunk(b"IHDR", &ihdr);
        // A stored (uncompressed) deflate block of one row's filter byte, then nothing.
        chunk(
            b"IDAT",
            &[0x78, 0x01, 0x01, 0x01, 0x00, 0xFE, 0xFF, 0x00, 0, 1, 0, 1],
        );
        chunk(b"IEND", &[]);
        png
    }

    #[test]
    fn a_huge_image_mark_is_efbig_before_decoding() {
        let mut marks = Marks::default();
        marks.insert("huge.png".into(), png_header(8000, 8000));
        let settings = Settings::default();
        let ctx = OpContext {
            settings: &settings,
            marks: &marks,
            output_alpha: false,
        };
        let mark = parse(&format!("watermark,image_{}", encode_base64("huge.png")));
        let message = too_large(apply(plain(400, 400, 128), &mark, &ctx));
        assert!(
            message.contains("watermark layer would be 8000x8000"),
            "{message}"
        );
        // Scaled to 10 % of the base it would fit: then the (broken) file is decoded.
        let path = "huge.png?x-oss-process=image/resize,P_10";
        let mark = parse(&format!("watermark,image_{}", encode_base64(path)));
        let scaled = apply(plain(400, 400, 128), &mark, &ctx);
        assert!(matches!(scaled, Err(Error::Decode(_))), "{scaled:?}");
        let header = crate::pipeline::codec::probe(&png_header(8000, 8000)).unwrap();
        let WatermarkContent::Image(m) = &mark.content else {
            unreachable!()
        };
        assert_eq!(
            plan_image(m, 400, &header),
            LayerPlan::Image {
                decoded: (8000, 8000),
                placed: (40, 40)
            }
        );
    }
}
