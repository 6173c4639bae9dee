//! crop, indexcrop, circle, rounded-corners, rotate, flip.

use image::{DynamicImage, GenericImageView};
use rayon::prelude::*;

use super::codec::flatten_on_white;
use super::OpContext;
use crate::error::{Error, Result};
use crate::spec::ops::{Axis, Crop, Flip, IndexCrop};
use crate::spec::Op;

pub(super) fn apply(image: DynamicImage, op: &Op, ctx: &OpContext<'_>) -> Result<DynamicImage> {
    match op {
        Op::Crop(c) => crop(image, c),
        Op::IndexCrop(c) => Ok(index_crop(image, c)),
        Op::Circle { r } => Ok(circle(image, *r, ctx.output_alpha)),
        Op::RoundedCorners { r } => Ok(rounded_corners(image, *r, ctx.output_alpha)),
        Op::Rotate(d) => rotate(image, *d, ctx),
        Op::Flip(Flip::Horizontal) => Ok(image.fliph()),
        Op::Flip(Flip::Vertical) => Ok(image.flipv()),
        // Mirroring both ways is a half turn.
        Op::Flip(Flip::Both) => Ok(image.rotate180()),
        _ => Err(Error::spec(format!(
            "{}: not a geometry operation",
            op.canonical()
        ))),
    }
}

fn crop(image: DynamicImage, c: &Crop) -> Result<DynamicImage> {
    let (big_w, big_h) = image.dimensions();
    // Without w/h the area runs to the image edge: the full side, clipped below.
    let (w, h) = (c.w.unwrap_or(big_w), c.h.unwrap_or(big_h));
    let (ox, oy) = c.gravity.origin(big_w, big_h, w, h);
    let (x, y) = (ox + i64::from(c.x), oy + i64::from(c.y));
    if x >= i64::from(big_w) || y >= i64::from(big_h) {
        return Err(Error::spec(format!(
            "crop: start point ({x}, {y}) is outside the {big_w}x{big_h} image"
        )));
    }
    // An area larger than the image placed by a centring gravity starts before the edge
    // (x < 0): that part is clipped like any other overhang. The area always overlaps.
    let (x0, y0) = (x.max(0), y.max(0));
    let x1 = (x + i64::from(w)).min(i64::from(big_w));
    let y1 = (y + i64::from(h)).min(i64::from(big_h));
    Ok(image.crop_imm(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32))
}

fn index_crop(image: DynamicImage, c: &IndexCrop) -> DynamicImage {
    let (w, h) = image.dimensions();
    let side = if c.axis == Axis::X { w } else { h };
    let start = u64::from(c.index) * u64::from(c.size);
    if start >= u64::from(side) {
        // Past the last slice: unchanged (docs/operations.md).
        return image;
    }
    let start = start as u32;
    let len = c.size.min(side - start);
    match c.axis {
        Axis::X => image.crop_imm(start, 0, len, h),
        Axis::Y => image.crop_imm(0, start, w, len),
    }
}

/// Coverage of a pixel whose centre is `d` from the centre of a disc of radius `radius`:
/// a one-pixel ramp across the edge, which anti-aliases it.
fn coverage(d: f32, radius: f32) -> f32 {
    (radius - d + 0.5).clamp(0.0, 1.0)
}

fn circle(image: DynamicImage, r: u32, output_alpha: bool) -> DynamicImage {
    let (w, h) = image.dimensions();
    // The contract caps r at (short-1)/2 when it exceeds half the shorter side; capping at
    // (short-1)/2 always also covers r == short/2 of an even side, where 2r+1 would not fit.
    let r = r.min((w.min(h).saturating_sub(1)) / 2);
    let side = 2 * r + 1;
    let cropped = image.crop_imm(w / 2 - r, h / 2 - r, side, side);
    let centre = side as f32 / 2.0;
    let radius = centre;
    mask(cropped, output_alpha, &[(0, 0, side, side)], |x, y| {
        let (dx, dy) = (x as f32 + 0.5 - centre, y as f32 + 0.5 - centre);
        coverage(dx.hypot(dy), radius)
    })
}

fn rounded_corners(image: DynamicImage, r: u32, output_alpha: bool) -> DynamicImage {
    let (w, h) = image.dimensions();
    let r = r.min(w.min(h) / 2);
    if r == 0 {
        return image;
    }
    let rf = r as f32;
    let corners = [
        (0, 0, r, r),
        (w - r, 0, w, r),
        (0, h - r, r, h),
        (w - r, h - r, w, h),
    ];
    mask(image, output_alpha, &corners, |x, y| {
        // Distance to the centre of the nearest corner's quarter disc, per axis; pixels
        // outside the corner boxes are never asked.
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        let dx = (rf - px).max(px - (w as f32 - rf)).max(0.0);
        let dy = (rf - py).max(py - (h as f32 - rf)).max(0.0);
        coverage(dx.hypot(dy), rf)
    })
}

/// Makes each pixel in `regions` (x0, y0, x1, y1; exclusive ends) only `cover(x, y)` opaque:
/// its alpha is scaled when the output keeps alpha, else it is blended toward white.
fn mask(
    image: DynamicImage,
    output_alpha: bool,
    regions: &[(u32, u32, u32, u32)],
    cover: impl Fn(u32, u32) -> f32,
) -> DynamicImage {
    if !output_alpha && !image.color().has_alpha() {
        let mut rgb = image.into_rgb8();
        for &(x0, y0, x1, y1) in regions {
            for y in y0..y1 {
                for x in x0..x1 {
                    let k = cover(x, y);
                    for v in &mut rgb.get_pixel_mut(x, y).0 {
                        *v = (f32::from(*v) * k + 255.0 * (1.0 - k)).round() as u8;
                    }
                }
            }
        }
        return DynamicImage::ImageRgb8(rgb);
    }
    let mut rgba = image.into_rgba8();
    for &(x0, y0, x1, y1) in regions {
        for y in y0..y1 {
            for x in x0..x1 {
                let a = &mut rgba.get_pixel_mut(x, y).0[3];
                *a = (f32::from(*a) * cover(x, y)).round() as u8;
            }
        }
    }
    let rgba = DynamicImage::ImageRgba8(rgba);
    if output_alpha {
        rgba
    } else {
        flatten_on_white(&rgba)
    }
}

fn rotate(image: DynamicImage, degrees: u32, ctx: &OpContext<'_>) -> Result<DynamicImage> {
    match degrees % 360 {
        0 => Ok(image),
        90 => Ok(image.rotate90()),
        180 => Ok(image.rotate180()),
        270 => Ok(image.rotate270()),
        d => rotate_free(image, d, ctx),
    }
}

/// Clockwise rotation by any angle onto a canvas that holds the whole rotated image
/// (its bounding box); bilinear sampling, the outside is transparent or white.
fn rotate_free(image: DynamicImage, degrees: u32, ctx: &OpContext<'_>) -> Result<DynamicImage> {
    let (w, h) = image.dimensions();
    let (sin, cos) = f64::from(degrees).to_radians().sin_cos();
    // The epsilon keeps exact sides (cos 60° = 0.5000000001) from growing by one.
    let bound = |a: f64, b: f64| ((a * cos.abs() + b * sin.abs()) - 1e-6).ceil().max(1.0) as u64;
    let (out_w, out_h) = (bound(w.into(), h.into()), bound(h.into(), w.into()));
    ctx.settings.limits.check_output(out_w, out_h)?;
    let (out_w, out_h) = (out_w as u32, out_h as u32);

    let converted;
    let (src, ch): (&[u8], usize) = match &image {
        DynamicImage::ImageRgb8(b) => (b.as_raw(), 3),
        DynamicImage::ImageRgba8(b) => (b.as_raw(), 4),
        other => {
            converted = other.to_rgba8();
            (converted.as_raw(), 4)
        }
    };
    let out_ch = if ctx.output_alpha { 4 } else { 3 };
    let mut out = vec![0u8; out_w as usize * out_h as usize * out_ch];
    let (half_w, half_h) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let (half_ow, half_oh) = (f64::from(out_w) / 2.0, f64::from(out_h) / 2.0);
    out.par_chunks_mut(out_w as usize * out_ch)
        .enumerate()
        .for_each(|(v, row)| {
            let dy = v as f64 + 0.5 - half_oh;
            for (u, px) in row.chunks_exact_mut(out_ch).enumerate() {
                let dx = u as f64 + 0.5 - half_ow;
                // Inverse of the clockwise rotation (y points down), back to source pixel
                // indices (a pixel's centre is at index + 0.5).
                let sx = dx * cos + dy * sin + half_w - 0.5;
                let sy = -dx * sin + dy * cos + half_h - 0.5;
                let (rgb, a) = bilinear(src, (w, h, ch), sx as f32, sy as f32);
                if out_ch == 4 {
                    if a > 0.0 {
                        for c in 0..3 {
                            px[c] = (rgb[c] / a).round().clamp(0.0, 255.0) as u8;
                        }
                    }
                    px[3] = (a * 255.0).round() as u8;
                } else {
                    // Premultiplied colour over white.
                    for c in 0..3 {
                        px[c] = (rgb[c] + 255.0 * (1.0 - a)).round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        });
    Ok(if out_ch == 4 {
        DynamicImage::ImageRgba8(image::RgbaImage::from_raw(out_w, out_h, out).expect("size"))
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(out_w, out_h, out).expect("size"))
    })
}

/// Premultiplied colour and alpha (0..1) at a fractional pixel index of `src` (`ch` channels
/// a pixel); pixels outside count as transparent, so rotated edges come out anti-aliased.
fn bilinear(src: &[u8], (w, h, ch): (u32, u32, usize), x: f32, y: f32) -> ([f32; 3], f32) {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (mut rgb, mut alpha) = ([0.0f32; 3], 0.0f32);
    for (yi, wy) in [(y0, 1.0 - fy), (y0 + 1, fy)] {
        for (xi, wx) in [(x0, 1.0 - fx), (x0 + 1, fx)] {
            if xi < 0 || yi < 0 || xi >= i64::from(w) || yi >= i64::from(h) || wx * wy == 0.0 {
                continue;
            }
            let p = &src[(yi as usize * w as usize + xi as usize) * ch..][..ch];
            let a = if ch == 4 {
                f32::from(p[3]) / 255.0
            } else {
                1.0
            };
            let k = wx * wy * a;
            for c in 0..3 {
                rgb[c] += k * f32::from(p[c]);
            }
            alpha += k;
        }
    }
    (rgb, alpha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Settings;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    /// An image whose pixel (x, y) encodes its own coordinates.
    fn coords(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            Rgb([x as u8, y as u8, (x / 256 + 16 * (y / 256)) as u8])
        }))
    }

    fn run_op(
        image: DynamicImage,
        op: &Op,
        output_alpha: bool,
        max_side: u32,
    ) -> Result<DynamicImage> {
        let mut settings = Settings::default();
        settings.limits.max_output_side = max_side;
        apply(
            image,
            op,
            &OpContext {
                settings: &settings,
                marks: &Default::default(),
                output_alpha,
            },
        )
    }

    /// Runs one operation, written as on a mount (`crop,w_100,g_se`).
    fn run(image: DynamicImage, op: &str, output_alpha: bool) -> Result<DynamicImage> {
        let spec = crate::spec::Spec::parse(op, &Default::default()).unwrap();
        run_op(image, &spec.ops[0], output_alpha, 16_384)
    }

    /// (width, height, first pixel) of `op` on a 400×267 coordinate image.
    fn cut(op: &str) -> (u32, u32, [u8; 3]) {
        let out = run(coords(400, 267), op, false).unwrap();
        (out.width(), out.height(), out.to_rgb8().get_pixel(0, 0).0)
    }

    #[test]
    fn crop_origin_of_each_gravity() {
        let g = |g: &str| cut(&format!("crop,w_100,h_50,g_{g}"));
        assert_eq!(g("nw"), (100, 50, [0, 0, 0]));
        assert_eq!(g("north"), (100, 50, [150, 0, 0]));
        assert_eq!(g("ne"), (100, 50, [44, 0, 1]));
        assert_eq!(g("west"), (100, 50, [0, 108, 0]));
        assert_eq!(g("center"), (100, 50, [150, 108, 0]));
        assert_eq!(g("east"), (100, 50, [44, 108, 1]));
        assert_eq!(g("sw"), (100, 50, [0, 217, 0]));
        assert_eq!(g("south"), (100, 50, [150, 217, 0]));
        assert_eq!(g("se"), (100, 50, [44, 217, 1]));
        // Offsets move right and down from the origin.
        assert_eq!(cut("crop,w_100,h_50,x_10,y_5"), (100, 50, [10, 5, 0]));
        assert_eq!(
            cut("crop,w_100,h_50,x_7,y_3,g_center"),
            (100, 50, [157, 111, 0])
        );
    }

    #[test]
    fn crop_clips_and_defaults_to_the_edge() {
        assert_eq!(cut("crop,w_100,h_100,x_350,y_200"), (50, 67, [94, 200, 1]));
        assert_eq!(
            cut("crop,w_100,h_50,x_20,y_10,g_se"),
            (80, 40, [64, 227, 1])
        );
        assert_eq!(cut("crop,x_100,y_67"), (300, 200, [100, 67, 0]));
        assert_eq!(cut("crop,w_50"), (50, 267, [0, 0, 0]));
        // Larger than the image and centred: clipped on every side.
        assert_eq!(cut("crop,w_1000,h_1000,g_center"), (400, 267, [0, 0, 0]));
        // The last pixel is still inside.
        assert_eq!(cut("crop,w_10,h_10,x_399,y_266"), (1, 1, [143, 10, 17]));
    }

    #[test]
    fn crop_start_outside_the_image_is_einval() {
        for (x, y) in [(400, 0), (0, 267), (500, 500)] {
            let op = format!("crop,w_10,h_10,x_{x},y_{y}");
            let err = run(coords(400, 267), &op, true).unwrap_err();
            assert_eq!(err.errno(), libc::EINVAL);
            let text = err.to_string();
            assert!(
                text.contains("crop") && text.contains(&format!("({x}, {y})")),
                "{text}"
            );
        }
    }

    #[test]
    fn indexcrop_slices() {
        assert_eq!(cut("indexcrop,x_150,i_0"), (150, 267, [0, 0, 0]));
        assert_eq!(cut("indexcrop,x_150,i_1"), (150, 267, [150, 0, 0]));
        // The last slice is narrower: 400 - 300.
        assert_eq!(cut("indexcrop,x_150,i_2"), (100, 267, [44, 0, 1]));
        assert_eq!(cut("indexcrop,y_100,i_1"), (400, 100, [0, 100, 0]));
        assert_eq!(cut("indexcrop,y_100,i_2"), (400, 67, [0, 200, 0]));
        // Past the last slice: unchanged.
        assert_eq!(cut("indexcrop,x_150,i_3"), (400, 267, [0, 0, 0]));
        assert_eq!(cut("indexcrop,y_100,i_30000"), (400, 267, [0, 0, 0]));
    }

    #[test]
    fn worked_examples_rotate_90_and_circle_100() {
        let out = run(coords(400, 267), "rotate,90", false).unwrap();
        assert_eq!(out.dimensions(), (267, 400));
        // Clockwise: the top-left corner goes to the top-right.
        assert_eq!(out.to_rgb8().get_pixel(266, 0).0, [0, 0, 0]);
        let out = run(coords(400, 267), "circle,r_100", true).unwrap();
        assert_eq!(out.dimensions(), (201, 201));
        // Cut around the centre (200, 133).
        assert_eq!(out.to_rgba8().get_pixel(100, 100).0, [200, 133, 0, 255]);
        // Too large a radius: (short-1)/2, also for an even shorter side.
        assert_eq!(cut("circle,r_4096").0, 267);
        let out = run(coords(400, 200), "circle,r_100", true).unwrap();
        assert_eq!(out.dimensions(), (199, 199));
    }

    #[test]
    fn circle_outside_is_transparent_or_white() {
        let red = || DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 200, Rgb([200, 0, 0])));
        let DynamicImage::ImageRgba8(out) = run(red(), "circle,r_50", true).unwrap() else {
            panic!("alpha output must be RGBA")
        };
        assert_eq!(out.get_pixel(0, 0)[3], 0);
        assert_eq!(out.get_pixel(100, 100)[3], 0);
        assert_eq!(out.get_pixel(50, 50).0, [200, 0, 0, 255]);
        // The edge is anti-aliased: partly covered pixels exist.
        assert!(out.pixels().any(|p| p[3] > 0 && p[3] < 255));
        let DynamicImage::ImageRgb8(out) = run(red(), "circle,r_50", false).unwrap() else {
            panic!("output without alpha must be RGB")
        };
        assert_eq!(out.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(100, 0).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(50, 50).0, [200, 0, 0]);
        assert_eq!(out.get_pixel(50, 0).0, [200, 0, 0]);
    }

    #[test]
    fn rounded_corners_cut_corners_only() {
        let src = coords(400, 267);
        let out = run(src.clone(), "rounded-corners,r_30", true)
            .unwrap()
            .to_rgba8();
        assert_eq!(out.dimensions(), (400, 267));
        for (x, y) in [(0, 0), (399, 0), (0, 266), (399, 266)] {
            assert_eq!(out.get_pixel(x, y)[3], 0, "corner ({x}, {y})");
        }
        // Centre, edge middles and the inner part of a corner box are untouched.
        let orig = src.to_rgba8();
        for (x, y) in [(200, 133), (200, 0), (0, 133), (29, 29), (370, 237)] {
            assert_eq!(out.get_pixel(x, y), orig.get_pixel(x, y), "({x}, {y})");
        }
        let out = run(src.clone(), "rounded-corners,r_30", false).unwrap();
        let DynamicImage::ImageRgb8(out) = out else {
            panic!("output without alpha must be RGB")
        };
        assert_eq!(out.get_pixel(399, 266).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(200, 133).0, [200, 133, 0]);
        // r is capped at half the shorter side: the left corners meet in a half disc.
        let out = run(src, "rounded-corners,r_4096", true).unwrap().to_rgba8();
        assert_eq!(out.get_pixel(0, 133)[3], 255);
        assert_eq!(out.get_pixel(0, 20)[3], 0);
    }

    #[test]
    fn flip_mirrors() {
        let src = coords(40, 30).to_rgb8();
        let flip = |how: &str| run(coords(40, 30), &format!("flip,{how}"), true).unwrap();
        let (h, v, hv) = (
            flip("h").to_rgb8(),
            flip("v").to_rgb8(),
            flip("hv").to_rgb8(),
        );
        for (x, y) in [(0, 0), (3, 7), (39, 29), (20, 15)] {
            assert_eq!(h.get_pixel(x, y), src.get_pixel(39 - x, y));
            assert_eq!(v.get_pixel(x, y), src.get_pixel(x, 29 - y));
            assert_eq!(hv.get_pixel(x, y), src.get_pixel(39 - x, 29 - y));
        }
    }

    #[test]
    fn rotate_right_angles_are_exact() {
        let src = coords(40, 30).to_rgb8();
        let r180 = run(coords(40, 30), "rotate,180", true).unwrap().to_rgb8();
        assert_eq!(r180.get_pixel(0, 0), src.get_pixel(39, 29));
        let r270 = run(coords(40, 30), "rotate,270", true).unwrap();
        assert_eq!(r270.dimensions(), (30, 40));
        // A quarter turn back: the top-right corner goes to the top-left.
        assert_eq!(r270.to_rgb8().get_pixel(0, 0), src.get_pixel(39, 0));
        // 0 and 360 never reach a parsed chain (identities are dropped): call directly.
        for d in [0, 360] {
            let out = run_op(coords(40, 30), &Op::Rotate(d), true, 16_384).unwrap();
            assert_eq!(out.to_rgb8(), src);
        }
    }

    #[test]
    fn rotate_45_grows_the_canvas() {
        let blue =
            || DynamicImage::ImageRgba8(RgbaImage::from_pixel(100, 60, Rgba([0, 0, 250, 255])));
        let out = run(blue(), "rotate,45", true).unwrap();
        // (100 + 60) * cos 45° = 113.1.
        assert_eq!(out.dimensions(), (114, 114));
        let rgba = out.to_rgba8();
        assert_eq!(rgba.get_pixel(57, 57).0, [0, 0, 250, 255]);
        assert_eq!(rgba.get_pixel(0, 0)[3], 0);
        let DynamicImage::ImageRgb8(rgb) = run(blue(), "rotate,45", false).unwrap() else {
            panic!("output without alpha must be RGB")
        };
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(57, 57).0, [0, 0, 250]);
        // Clockwise: the source's top-left corner ends up at the top of the canvas (turned
        // the other way it would be at the far left, halfway down).
        let marked = DynamicImage::ImageRgb8(RgbImage::from_fn(100, 60, |x, y| {
            Rgb([if x < 10 && y < 10 { 255 } else { 0 }, 0, 0])
        }));
        let out = run(marked, "rotate,30", false).unwrap().to_rgb8();
        let red: Vec<_> = out
            .enumerate_pixels()
            .filter(|p| p.2 .0 == [255, 0, 0])
            .collect();
        assert!(!red.is_empty());
        assert!(red.iter().all(|p| p.0 < out.width() / 2 && p.1 < 20));
    }

    #[test]
    fn rotate_checks_the_output_limit_first() {
        let err = run_op(coords(100, 60), &Op::Rotate(45), true, 100).unwrap_err();
        assert_eq!(err.errno(), libc::EFBIG);
        // 90° turns keep the pixel count; the final output check is the pipeline's.
        assert!(run_op(coords(100, 60), &Op::Rotate(90), true, 100).is_ok());
    }
}
