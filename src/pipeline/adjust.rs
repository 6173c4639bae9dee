//! blur, bright, contrast, sharpen.
//!
//! Every operation here changes colour channels only: alpha passes through untouched.

use image::{DynamicImage, ImageBuffer, Pixel};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::spec::Op;

pub(super) fn apply(image: DynamicImage, op: &Op) -> Result<DynamicImage> {
    Ok(match *op {
        Op::Bright(v) => map_colours(image, &lut(|c| c + bright_shift(v))),
        Op::Contrast(v) => {
            let f = contrast_factor(v);
            map_colours(image, &lut(|c| f * (c - 128.0) + 128.0))
        }
        Op::Blur { r, s } => convolve(image, &gaussian(r, s as f32), |_, blurred| blurred),
        Op::Sharpen(v) => {
            let amount = sharpen_amount(v);
            convolve(image, &gaussian(1, 1.0), move |orig, blurred| {
                orig + amount * (orig - blurred)
            })
        }
        _ => {
            return Err(Error::spec(format!(
                "{}: not an adjustment",
                op.canonical()
            )))
        }
    })
}

/// `bright,v`: every colour channel moves by v % of the full range (v × 2.55), clamped.
fn bright_shift(v: i32) -> f32 {
    v as f32 * 2.55
}

/// `contrast,v`: the slope around mid-grey 128 is the classic
/// F = 259 (C + 255) / (255 (259 − C)) with C = v × 2.55, so
/// v = 0 → F = 1 (unchanged), v = −100 → F = 0 (flat grey), v = 50 → F ≈ 2.95,
/// v = 100 → F ≈ 130 (nearly a threshold at 128). out = F (c − 128) + 128, clamped.
fn contrast_factor(v: i32) -> f32 {
    let c = v as f32 * 2.55;
    259.0 * (c + 255.0) / (255.0 * (259.0 - c))
}

/// `sharpen,v`: an unsharp mask, out = c + (v / 100) (c − blur(c)), where blur is the 3×3
/// Gaussian of σ = 1 px (radius 1); no threshold. v = 100 adds the full detail once.
fn sharpen_amount(v: u32) -> f32 {
    v as f32 / 100.0
}

/// A lookup table of `f` over 0..=255, rounded and clamped.
fn lut(f: impl Fn(f32) -> f32) -> [u8; 256] {
    std::array::from_fn(|i| f(i as f32).round().clamp(0.0, 255.0) as u8)
}

fn map_colours(image: DynamicImage, table: &[u8; 256]) -> DynamicImage {
    fn map<P: Pixel<Subpixel = u8>>(
        mut buf: ImageBuffer<P, Vec<u8>>,
        table: &[u8; 256],
    ) -> ImageBuffer<P, Vec<u8>> {
        let ch = usize::from(P::CHANNEL_COUNT);
        buf.par_chunks_mut(ch * 4096).for_each(|chunk| {
            for px in chunk.chunks_exact_mut(ch) {
                // The first three channels are colour; a fourth is alpha and stays.
                for v in &mut px[..3] {
                    *v = table[usize::from(*v)];
                }
            }
        });
        buf
    }
    match image {
        DynamicImage::ImageRgb8(b) => DynamicImage::ImageRgb8(map(b, table)),
        DynamicImage::ImageRgba8(b) => DynamicImage::ImageRgba8(map(b, table)),
        other => map_colours(to_rgb_or_rgba(other), table),
    }
}

fn to_rgb_or_rgba(image: DynamicImage) -> DynamicImage {
    if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    }
}

/// Normalised Gaussian weights for offsets −radius..=radius. Weights past 3σ (less than
/// 0.3 % of the total) are left out, which keeps `blur,r_50,s_2` as cheap as `r_6`.
fn gaussian(radius: u32, sigma: f32) -> Vec<f32> {
    let radius = radius.min((3.0 * sigma).ceil() as u32) as i32;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|k| (-((k * k) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / sum).collect()
}

/// Runs the separable `kernel` over the image (edges repeated) and writes, per colour
/// channel, `finish(original, blurred)` rounded and clamped; alpha is kept.
fn convolve(
    image: DynamicImage,
    kernel: &[f32],
    finish: impl Fn(f32, f32) -> f32 + Sync,
) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    match image {
        DynamicImage::ImageRgb8(b) => {
            let out = convolve_raw::<3>(b.as_raw(), w as usize, h as usize, kernel, &finish);
            DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, out).expect("same size"))
        }
        DynamicImage::ImageRgba8(b) => {
            let out = convolve_raw::<4>(b.as_raw(), w as usize, h as usize, kernel, &finish);
            DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, out).expect("same size"))
        }
        other => convolve(to_rgb_or_rgba(other), kernel, finish),
    }
}

/// One output row at a time: the vertical pass sums `kernel.len()` source rows into a row
/// of f32, the horizontal pass runs along it. No image-sized intermediate buffer, and rows
/// are independent, so they run in parallel.
///
/// With alpha (CH = 4), colours are averaged weighted by alpha (premultiplied), so the
/// colour hidden under transparent pixels does not bleed into visible ones.
fn convolve_raw<const CH: usize>(
    src: &[u8],
    width: usize,
    height: usize,
    kernel: &[f32],
    finish: &(impl Fn(f32, f32) -> f32 + Sync),
) -> Vec<u8> {
    let r = kernel.len() / 2;
    let stride = width * CH;
    let mut out = vec![0u8; src.len()];
    if stride == 0 {
        return out;
    }
    out.par_chunks_mut(stride).enumerate().for_each_init(
        || vec![0f32; (width + 2 * r) * CH],
        |col, (y, out_row)| {
            let mid = &mut col[r * CH..(r + width) * CH];
            mid.fill(0.0);
            for (k, &wk) in kernel.iter().enumerate() {
                let sy = (y + k).saturating_sub(r).min(height - 1);
                let row = &src[sy * stride..][..stride];
                if CH == 4 {
                    for (acc, px) in mid.chunks_exact_mut(4).zip(row.chunks_exact(4)) {
                        let wa = wk * f32::from(px[3]);
                        for c in 0..3 {
                            acc[c] += wa * f32::from(px[c]);
                        }
                        acc[3] += wa;
                    }
                } else {
                    for (acc, &v) in mid.iter_mut().zip(row) {
                        *acc += wk * f32::from(v);
                    }
                }
            }
            // Repeat the edge pixels so that the horizontal pass needs no bounds checks.
            for i in 0..r {
                col.copy_within(r * CH..(r + 1) * CH, i * CH);
                col.copy_within((r + width - 1) * CH..(r + width) * CH, (r + width + i) * CH);
            }
            let src_row = &src[y * stride..][..stride];
            for (x, (dst, orig)) in out_row
                .chunks_exact_mut(CH)
                .zip(src_row.chunks_exact(CH))
                .enumerate()
            {
                let mut sum = [0f32; CH];
                for (k, &wk) in kernel.iter().enumerate() {
                    let p = &col[(x + k) * CH..][..CH];
                    for c in 0..CH {
                        sum[c] += wk * p[c];
                    }
                }
                for c in 0..3 {
                    let o = f32::from(orig[c]);
                    let blurred = match CH {
                        4 if sum[3] > 0.0 => sum[c] / sum[3],
                        // Nothing visible around: the pixel keeps its own colour.
                        4 => o,
                        _ => sum[c],
                    };
                    dst[c] = finish(o, blurred).round().clamp(0.0, 255.0) as u8;
                }
                if CH == 4 {
                    dst[3] = orig[3];
                }
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn mean(image: &DynamicImage) -> f64 {
        let rgb = image.to_rgb8();
        rgb.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / rgb.as_raw().len() as f64
    }

    /// A horizontal ramp 0..=255 with a constant alpha of 100.
    fn ramp() -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(256, 4, |x, _| {
            Rgba([x as u8, x as u8, 255 - x as u8, 100])
        }))
    }

    /// Left half `a`, right half `b`: one vertical edge.
    fn step(a: u8, b: u8) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(40, 10, |x, _| {
            Rgb([if x < 20 { a } else { b }; 3])
        }))
    }

    #[test]
    fn bright_shifts_every_colour_and_keeps_alpha() {
        let src = ramp();
        let up = apply(src.clone(), &Op::Bright(50)).unwrap();
        let down = apply(src.clone(), &Op::Bright(-50)).unwrap();
        assert!(mean(&up) > mean(&src) + 60.0);
        assert!(mean(&down) < mean(&src) - 60.0);
        // 100 → 100 + 127.5, clamped at the top.
        assert_eq!(up.to_rgba8().get_pixel(100, 0).0, [228, 228, 255, 100]);
        assert_eq!(up.to_rgba8().get_pixel(200, 0).0, [255, 255, 183, 100]);
        assert_eq!(down.to_rgba8().get_pixel(100, 0).0, [0, 0, 28, 100]);
        assert_eq!(apply(src.clone(), &Op::Bright(0)).unwrap(), src);
    }

    #[test]
    fn contrast_spreads_or_flattens_around_mid_grey() {
        let src = step(64, 192);
        let more = apply(src.clone(), &Op::Contrast(50)).unwrap().to_rgb8();
        let less = apply(src.clone(), &Op::Contrast(-50)).unwrap().to_rgb8();
        assert!(more.get_pixel(0, 0)[0] < 64 && more.get_pixel(39, 0)[0] > 192);
        assert!(less.get_pixel(0, 0)[0] > 64 && less.get_pixel(39, 0)[0] < 192);
        assert_eq!(apply(src.clone(), &Op::Contrast(0)).unwrap(), src);
        // Mid-grey is the fixed point; -100 makes everything that grey.
        let grey = apply(step(128, 128), &Op::Contrast(80)).unwrap();
        assert_eq!(grey.to_rgb8().get_pixel(0, 0).0, [128; 3]);
        let flat = apply(src, &Op::Contrast(-100)).unwrap();
        assert!(flat.to_rgb8().pixels().all(|p| p.0 == [128; 3]));
        // The mean moves away from 128: a dark image darkens, a light one lightens.
        let dark = step(40, 90);
        assert!(mean(&apply(dark.clone(), &Op::Contrast(40)).unwrap()) < mean(&dark));
        let light = step(160, 230);
        assert!(mean(&apply(light.clone(), &Op::Contrast(40)).unwrap()) > mean(&light));
        // Alpha is kept.
        let out = apply(ramp(), &Op::Contrast(60)).unwrap();
        assert!(out.to_rgba8().pixels().all(|p| p[3] == 100));
    }

    #[test]
    fn gaussian_kernel_is_normalised_and_bounded() {
        let k = gaussian(5, 2.0);
        assert_eq!(k.len(), 11);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(k[5] > k[4] && k[4] > k[3] && (k[4] - k[6]).abs() < 1e-7);
        // Past 3σ the kernel stops: r_50 with σ 2 is 13 taps.
        assert_eq!(gaussian(50, 2.0).len(), 13);
        assert_eq!(gaussian(50, 50.0).len(), 101);
    }

    #[test]
    fn blur_smooths_an_edge() {
        let src = step(0, 200);
        let out = apply(src.clone(), &Op::Blur { r: 5, s: 2 })
            .unwrap()
            .to_rgb8();
        let (left, right) = (out.get_pixel(19, 5)[0], out.get_pixel(20, 5)[0]);
        // The step of 200 becomes a ramp, symmetric around the edge.
        assert!(
            left > 30 && left < 100 && right > 100 && right < 170,
            "{left} {right}"
        );
        assert!((199..=201).contains(&(u32::from(left) + u32::from(right))));
        assert!(out.get_pixel(17, 5)[0] < left && out.get_pixel(22, 5)[0] > right);
        // Far from the edge and at the borders (edges repeated) nothing changes.
        assert_eq!(out.get_pixel(0, 0)[0], 0);
        assert_eq!(out.get_pixel(39, 9)[0], 200);
        // A flat image stays flat.
        let flat = apply(step(77, 77), &Op::Blur { r: 50, s: 50 }).unwrap();
        assert!(flat.to_rgb8().pixels().all(|p| p.0 == [77; 3]));
    }

    #[test]
    fn blur_keeps_alpha_and_hidden_colours_do_not_bleed() {
        // Left half fully transparent black, right half opaque red.
        let src = DynamicImage::ImageRgba8(RgbaImage::from_fn(40, 10, |x, _| {
            if x < 20 {
                Rgba([0, 0, 0, 0])
            } else {
                Rgba([220, 10, 10, 255])
            }
        }));
        let out = apply(src, &Op::Blur { r: 4, s: 3 }).unwrap().to_rgba8();
        assert_eq!(out.get_pixel(20, 5).0, [220, 10, 10, 255]);
        assert_eq!(out.get_pixel(19, 5)[3], 0);
        // The ramp of `ramp()` blurs (all alpha 100) but alpha stays 100.
        let out = apply(ramp(), &Op::Blur { r: 3, s: 3 }).unwrap().to_rgba8();
        assert!(out.pixels().all(|p| p[3] == 100));
        assert!((i32::from(out.get_pixel(100, 2)[0]) - 100).abs() <= 1);
    }

    #[test]
    fn sharpen_increases_local_contrast() {
        let src = step(100, 150);
        let out = apply(src.clone(), &Op::Sharpen(100)).unwrap().to_rgb8();
        let (left, right) = (out.get_pixel(19, 5)[0], out.get_pixel(20, 5)[0]);
        // Overshoot on both sides of the edge, nothing far from it.
        assert!(left < 100 && right > 150, "{left} {right}");
        assert_eq!(out.get_pixel(5, 5)[0], 100);
        assert_eq!(out.get_pixel(35, 5)[0], 150);
        // With the 3-tap kernel the neighbour is 27.4 % of the step: 100 - 13.7.
        assert_eq!(left, 86);
        // A larger value sharpens more.
        let strong = apply(src, &Op::Sharpen(300)).unwrap().to_rgb8();
        assert!(strong.get_pixel(19, 5)[0] < left && strong.get_pixel(20, 5)[0] > right);
        // Alpha is kept.
        let out = apply(ramp(), &Op::Sharpen(200)).unwrap();
        assert!(out.to_rgba8().pixels().all(|p| p[3] == 100));
    }
}
