//! `resize`: the five modes of docs/operations.md, planned in integers, resampled with SIMD.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, MulDiv, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, GenericImage, Rgba};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::spec::{Resize, ResizeMode, ResizeTarget};

/// What a resize does to a `src_w`×`src_h` image: scale to `scaled`, then fit `canvas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub scaled: (u32, u32),
    /// `fill`: centre-crop to this box; `pad`: centre on a canvas of this size.
    pub canvas: Option<(u32, u32)>,
}

impl Plan {
    pub fn output(&self) -> (u32, u32) {
        self.canvas.unwrap_or(self.scaled)
    }
}

fn round(v: f64) -> u32 {
    (v.round() as u32).max(1)
}

/// Plans a resize in the source's own dimensions; None means "leave the image as it is"
/// (limit_1 and the target would enlarge it).
pub fn plan(src_w: u32, src_h: u32, r: &Resize) -> Option<Plan> {
    let (w, h) = (f64::from(src_w), f64::from(src_h));
    let landscape = src_w >= src_h;
    // The box to fit, as (width, height); None on a side means "follow the aspect ratio".
    let (box_w, box_h) = match r.target {
        ResizeTarget::Percent(p) => {
            let f = f64::from(p) / 100.0;
            (Some(round(w * f)), Some(round(h * f)))
        }
        ResizeTarget::Box { w, h } => (w, h),
        // l is the target of the longer side, s of the shorter.
        ResizeTarget::Sides { l, s } if landscape => (l, s),
        ResizeTarget::Sides { l, s } => (s, l),
    };
    // A percentage, or one side alone (lfit, mfit, fixed), sets the size directly: the other
    // side follows the aspect ratio, rounded once.
    let mut direct = matches!(r.target, ResizeTarget::Percent(_));
    let (box_w, box_h) = match (box_w, box_h) {
        (Some(bw), Some(bh)) => (bw, bh),
        // fill and pad use a square box when only one side is given.
        (Some(b), None) | (None, Some(b))
            if matches!(r.mode, ResizeMode::Fill | ResizeMode::Pad) =>
        {
            (b, b)
        }
        (Some(bw), None) => {
            direct = true;
            (bw, round(h * f64::from(bw) / w))
        }
        (None, Some(bh)) => {
            direct = true;
            (round(w * f64::from(bh) / h), bh)
        }
        (None, None) => return None,
    };
    let (fx, fy) = (f64::from(box_w) / w, f64::from(box_h) / h);
    let fit = |f: f64| (round(w * f), round(h * f));
    let plan = if direct {
        Plan {
            scaled: (box_w, box_h),
            canvas: None,
        }
    } else {
        match r.mode {
            ResizeMode::Lfit => Plan {
                scaled: fit(fx.min(fy)),
                canvas: None,
            },
            ResizeMode::Mfit => Plan {
                scaled: fit(fx.max(fy)),
                canvas: None,
            },
            ResizeMode::Fill => {
                let (sw, sh) = fit(fx.max(fy));
                Plan {
                    scaled: (sw.max(box_w), sh.max(box_h)),
                    canvas: Some((box_w, box_h)),
                }
            }
            ResizeMode::Pad => {
                let (sw, sh) = fit(fx.min(fy));
                Plan {
                    scaled: (sw.min(box_w), sh.min(box_h)),
                    canvas: Some((box_w, box_h)),
                }
            }
            ResizeMode::Fixed => Plan {
                scaled: (box_w, box_h),
                canvas: None,
            },
        }
    };
    let enlarges = plan.scaled.0 > src_w || plan.scaled.1 > src_h;
    if r.limit && enlarges {
        return None;
    }
    Some(plan)
}

pub fn check(plan: &Plan, limits: &Limits) -> Result<()> {
    let (w, h) = plan.output();
    limits.check_output(
        u64::from(w.max(plan.scaled.0)),
        u64::from(h.max(plan.scaled.1)),
    )
}

/// Applies a plan to an image that may have been decoded at a reduced scale: the plan is in
/// the source's dimensions, so the result is the same as resizing the full-size image.
pub fn apply(image: DynamicImage, plan: &Plan, pad_color: [u8; 3]) -> Result<DynamicImage> {
    let scaled = resample(image, plan.scaled.0, plan.scaled.1)?;
    let Some((cw, ch)) = plan.canvas else {
        return Ok(scaled);
    };
    if (cw, ch) == plan.scaled {
        return Ok(scaled);
    }
    if scaled.width() >= cw && scaled.height() >= ch {
        // fill: centre crop.
        let (x, y) = ((scaled.width() - cw) / 2, (scaled.height() - ch) / 2);
        return Ok(scaled.crop_imm(x, y, cw, ch));
    }
    // pad: centre on a canvas of `color` (opaque, as OSS does).
    let mut canvas = match scaled {
        DynamicImage::ImageRgba8(_) => DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            cw,
            ch,
            Rgba([pad_color[0], pad_color[1], pad_color[2], 255]),
        )),
        _ => DynamicImage::ImageRgb8(image::RgbImage::from_pixel(cw, ch, image::Rgb(pad_color))),
    };
    let (x, y) = ((cw - scaled.width()) / 2, (ch - scaled.height()) / 2);
    canvas
        .copy_from(&scaled, x, y)
        .map_err(|e| Error::Encode(format!("resize pad: {e}")))?;
    Ok(canvas)
}

/// Output rows resampled together: the resizer's scratch image is the source's width times
/// this many rows, not a second frame.
const BAND_ROWS: usize = 64;

fn lanczos3() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
}

fn resize_error(e: &dyn std::fmt::Display) -> Error {
    Error::Encode(format!("resize: {e}"))
}

/// Lanczos3 resampling (alpha-aware) with the SIMD resizer, in bands of output rows on the
/// current thread pool. Each band crops the source to its rows' span, and the filter still
/// reads the rows around a crop, so the bands join as one resize would have made them.
pub fn resample(image: DynamicImage, width: u32, height: u32) -> Result<DynamicImage> {
    if (image.width(), image.height()) == (width, height) {
        return Ok(image);
    }
    let (src_w, src_h) = (image.width(), image.height());
    match image {
        DynamicImage::ImageRgb8(src) => {
            let pixels = banded(
                src.as_raw(),
                (src_w, src_h),
                (width, height),
                PixelType::U8x3,
            )?;
            let out = image::RgbImage::from_raw(width, height, pixels)
                .ok_or_else(|| resize_error(&"wrong buffer size"))?;
            Ok(DynamicImage::ImageRgb8(out))
        }
        DynamicImage::ImageRgba8(mut src) => {
            // Premultiplied in place: the resizer would premultiply a copy of the frame.
            let mul_div = MulDiv::default();
            let mut view = Image::from_slice_u8(src_w, src_h, &mut src, PixelType::U8x4)
                .map_err(|e| resize_error(&e))?;
            mul_div
                .multiply_alpha_inplace(&mut view)
                .map_err(|e| resize_error(&e))?;
            let mut pixels = banded(
                src.as_raw(),
                (src_w, src_h),
                (width, height),
                PixelType::U8x4,
            )?;
            drop(src);
            let mut out = Image::from_slice_u8(width, height, &mut pixels, PixelType::U8x4)
                .map_err(|e| resize_error(&e))?;
            mul_div
                .divide_alpha_inplace(&mut out)
                .map_err(|e| resize_error(&e))?;
            let out = image::RgbaImage::from_raw(width, height, pixels)
                .ok_or_else(|| resize_error(&"wrong buffer size"))?;
            Ok(DynamicImage::ImageRgba8(out))
        }
        other => {
            let mut dst = DynamicImage::new(width, height, other.color());
            Resizer::new()
                .resize(&other, &mut dst, &lanczos3())
                .map_err(|e| resize_error(&e))?;
            Ok(dst)
        }
    }
}

/// Resamples `src` (premultiplied if it has alpha) band by band into a new buffer.
fn banded(
    src: &[u8],
    (src_w, src_h): (u32, u32),
    (width, height): (u32, u32),
    pixel: PixelType,
) -> Result<Vec<u8>> {
    let src = ImageRef::new(src_w, src_h, src, pixel).map_err(|e| resize_error(&e))?;
    let row = width as usize * pixel.size();
    let mut dst = vec![0u8; row * height as usize];
    // Source row where output row `y` begins (exact at both ends: integers below 2^53).
    let source_row = |y: usize| y as f64 * f64::from(src_h) / f64::from(height);
    dst.par_chunks_mut(row * BAND_ROWS)
        .enumerate()
        .try_for_each_init(Resizer::new, |resizer, (band, out)| {
            let (first, rows) = (band * BAND_ROWS, out.len() / row);
            let (top, bottom) = (source_row(first), source_row(first + rows));
            let options =
                lanczos3()
                    .use_alpha(false)
                    .crop(0.0, top, f64::from(src_w), bottom - top);
            let mut out = Image::from_slice_u8(width, rows as u32, out, pixel)
                .map_err(|e| resize_error(&e))?;
            resizer
                .resize(&src, &mut out, &options)
                .map_err(|e| resize_error(&e))
        })?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(chain: &str) -> Resize {
        let spec = crate::spec::Spec::parse(chain, &Default::default()).unwrap();
        match spec.ops[0] {
            crate::spec::Op::Resize(r) => r,
            _ => unreachable!(),
        }
    }

    fn out(w: u32, h: u32, chain: &str) -> (u32, u32) {
        plan(w, h, &resize(chain)).map_or((w, h), |p| p.output())
    }

    #[test]
    fn worked_examples_of_the_grammar() {
        assert_eq!(out(200, 100, "resize,m_lfit,w_150,h_80"), (150, 75));
        assert_eq!(out(200, 100, "resize,m_mfit,w_150,h_80"), (160, 80));
        assert_eq!(out(200, 100, "resize,m_fill,w_150,h_80"), (150, 80));
        assert_eq!(out(200, 100, "resize,m_pad,w_150,h_80"), (150, 80));
        assert_eq!(out(200, 100, "resize,m_fixed,w_150,h_80"), (150, 80));
        assert_eq!(out(3924, 2550, "resize,l_900,h_600"), (923, 600));
        // One side alone sets the scale: 6028×3391 to l_900 is 900 wide, not 899.
        assert_eq!(out(6028, 3391, "resize,l_900"), (900, 506));
        assert_eq!(out(3391, 6028, "resize,l_900"), (506, 900));
    }

    #[test]
    fn pad_and_fill_plans() {
        let p = plan(200, 100, &resize("resize,m_pad,w_150,h_80")).unwrap();
        assert_eq!(p.scaled, (150, 75));
        let p = plan(200, 100, &resize("resize,m_fill,w_150,h_80")).unwrap();
        assert_eq!(p.scaled, (160, 80));
        // One side given: fill and pad use a square box.
        assert_eq!(out(200, 100, "resize,m_fill,w_50"), (50, 50));
        assert_eq!(out(200, 100, "resize,m_pad,h_50"), (50, 50));
    }

    #[test]
    fn sides_percent_and_limit() {
        assert_eq!(out(400, 267, "resize,l_200"), (200, 134));
        assert_eq!(out(267, 400, "resize,l_200"), (134, 200));
        assert_eq!(out(400, 267, "resize,s_100"), (150, 100));
        assert_eq!(out(400, 267, "resize,p_50"), (200, 134));
        assert_eq!(out(400, 267, "resize,w_100"), (100, 67));
        // limit_1 (default): never enlarge; the image comes back at source size.
        assert_eq!(out(400, 267, "resize,w_800"), (400, 267));
        assert_eq!(out(400, 267, "resize,w_800,limit_0"), (800, 534));
        assert_eq!(out(400, 267, "resize,p_200"), (400, 267));
        assert_eq!(out(400, 267, "resize,p_200,limit_0"), (800, 534));
    }

    /// The reference: one resize of the whole frame, as the resizer makes it.
    fn whole(image: &DynamicImage, width: u32, height: u32) -> DynamicImage {
        let mut dst = DynamicImage::new(width, height, image.color());
        Resizer::new().resize(image, &mut dst, &lanczos3()).unwrap();
        dst
    }

    #[test]
    fn bands_join_as_one_resize() {
        let pattern = |x: u32, y: u32| {
            [
                (x * 13 % 251) as u8,
                (y * 7 % 253) as u8,
                ((x ^ y) % 256) as u8,
            ]
        };
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(301, 517, |x, y| {
            image::Rgb(pattern(x, y))
        }));
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(301, 517, |x, y| {
            let [r, g, b] = pattern(x, y);
            Rgba([r, g, b, ((x + y) % 256) as u8])
        }));
        // Down, up, and sizes that leave a short last band.
        for (w, h) in [(150, 259), (97, 129), (640, 1000), (301, 200)] {
            for image in [&rgb, &rgba] {
                let ours = resample(image.clone(), w, h).unwrap();
                let reference = whole(image, w, h);
                assert_eq!(ours.color(), reference.color());
                // A band's fractional crop gives weights that round a step differently in
                // fixed point; compared as seen (colour times alpha), as a step in a nearly
                // transparent pixel's colour is a large one once divided by its alpha.
                let seen = |image: &DynamicImage| -> Vec<i32> {
                    image
                        .to_rgba8()
                        .pixels()
                        .flat_map(|p| {
                            let a = i32::from(p[3]);
                            [0, 1, 2]
                                .map(|c| i32::from(p[c]) * a / 255)
                                .into_iter()
                                .chain([a])
                        })
                        .collect()
                };
                let worst = seen(&ours)
                    .iter()
                    .zip(seen(&reference))
                    .map(|(a, b)| a.abs_diff(b))
                    .max()
                    .unwrap();
                let allowed = if image.color().has_alpha() { 3 } else { 2 };
                assert!(
                    worst <= allowed,
                    "{w}×{h} {:?}: differs by {worst}",
                    image.color()
                );
            }
        }
    }

    #[test]
    fn resample_keeps_colour_and_size() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            64,
            32,
            image::Rgb([10, 200, 30]),
        ));
        let out = resample(img, 16, 8).unwrap();
        assert_eq!((out.width(), out.height()), (16, 8));
        assert_eq!(out.to_rgb8().get_pixel(8, 4).0, [10, 200, 30]);
    }
}
