//! `--target-quality SCORE`: for a lossy still encode whose request names no `quality`, the
//! smallest output whose SSIMULACRA2 against the encoder's input reaches SCORE, found by a
//! bounded search over the quality number (docs/benchmarks.md, "Target quality").
//!
//! The search, exactly:
//! 1. The first trial is the format's default quality (`--webp-quality` etc.).
//! 2. While one side is unknown (every trial passed, or every trial failed), the next trial
//!    steps from the last one by 10, then 20, then 40 (clamped to 1..=100): down while
//!    trials pass, up while they fail.
//! 3. Once a failing quality `f` and a passing quality `p > f` are known, the next trial is
//!    where the line through their scores meets SCORE (regula falsi, rounded up), kept
//!    inside `f+1..=p-1`; bisection when the scores are not increasing.
//! 4. It stops after [`MAX_TRIALS`] trials or when no quality is left between `f` and `p`
//!    (or 1 passed, or 100 failed). The answer is the smallest passing output; if none
//!    passed, the highest quality's output (a debug line says so).
//!
//! Each trial is encoded, decoded by imgfs's own decoder and scored against the image handed
//! to the encoder (flattened on white where it has alpha) by fast-ssim2 (SSIMULACRA2 with SIMD
//! kernels). Images up to [`SCORE_MAX_PIXELS`] (8 MiP: 4K UHD, 3840×2160, and smaller) are
//! scored whole, with the reference's half of the metric computed once per image, so the
//! output's score is exactly the one searched ([`SCORE_BYTES_PER_PIXEL`], about 0.9 GB at the
//! bound). Larger ones are scored at their own size too, but in strips of
//! [`SCORE_STRIP_ROWS`] rows (fast-ssim2's strip evaluation: the blurs warm up on halo rows,
//! the pooled error sums are merged), which bounds the working set to the inputs' planes and
//! one strip's (about 0.7 GB for 20 MP) at about 4 s of CPU a trial for 20 MP. Strips read a
//! little high against the whole image's score (0.0–2.0 points on 17–20 MP photos,
//! docs/benchmarks.md "Target quality"), so such outputs may land that far below SCORE; the
//! resampled scoring this replaced landed 1.4 to 11 below. Animations and lossless formats
//! never search.

use std::borrow::Cow;

use fast_ssim2::{
    compute_ssimulacra2_with_config, PixelDescriptor, PixelSlice, Ssimulacra2Config,
    Ssimulacra2Reference, StripConfig,
};
use image::{DynamicImage, RgbImage};

use super::codec::{self, DecodeRequest, EncodeRequest};
use super::Settings;
use crate::error::{Error, Result};
use crate::spec::{Format, Spec};

/// Changes whenever the search or its scorer changes which output it finds; keys of the disk
/// cache made with a target include it, so they never serve an older search's bytes.
/// 3: images over 8 MiP scored in strips at their own size (2: resampled to 8 MiP;
/// 1: ssimulacra2 0.5, 1 MiP).
pub const REVISION: u32 = 3;
/// Trial encodes per image, at most.
pub const MAX_TRIALS: usize = 6;
/// Largest image scored whole (8 MiP, 4K UHD fits); larger ones are scored in strips.
pub const SCORE_MAX_PIXELS: u64 = 8 << 20;
/// Interior rows of a strip (fast-ssim2's default halo of 96 rows above and below). Measured
/// on a 20 MP photo at Q60 against the whole image's 84.8: 256-row strips read 86.8 in 4.9–6.2 s
/// and 0.54 GB, 1024-row strips 86.2 in 4.3 s and 0.84 GB, 2048 rows 85.7 in 4.9 s and 1.2 GB.
pub const SCORE_STRIP_ROWS: usize = 1024;
/// A strip-wise comparison's peak, per pixel (both inputs' converted planes) and per column
/// (one strip's buffers with its halo): upper bounds of peak RSS over the two 8-bit inputs,
/// measured on 3000×3391, 6028×1700, 4096×4096 and 6028×3391 pairs (0.40, 0.55, 0.50 and
/// 0.69 GB; the bound gives 0.43, 0.58, 0.67, 0.87).
const STRIP_BYTES_PER_PIXEL: u64 = 28;
const STRIP_BYTES_PER_COLUMN: u64 = 48 << 10;
/// The scorer's peak per scored pixel while it compares a trial: fast-ssim2's reference
/// pyramid (below) and the comparison's own planes (the trial's linear RGB and XYB, its
/// blurs and the products). Measured as peak RSS over the two 8-bit inputs: 107.2 bytes on
/// a 1 MP pair, 106.2 on 8 MP, 106.0 on 20 MP (docs/benchmarks.md, "Target quality"),
/// rounded up.
const SCORE_BYTES_PER_PIXEL: u64 = 112;
/// The part of it held for the whole search, through every encode: the reference pyramid
/// (XYB, means and variances of every scale), 51.6, 51.1 and 51.0 bytes measured alike.
const SCORE_REFERENCE_BYTES_PER_PIXEL: u64 = 56;
/// A trial's decode (libheif's planes and RGBA, the largest of the codecs') and its
/// flattened copy, per output pixel.
const TRIAL_DECODE_BYTES_PER_PIXEL: u64 = 14;
/// The first steps while only one side of the target is known (then doubled).
const FIRST_STEP: u8 = 10;

/// The score to search for, when `--target-quality` applies to this encode: a lossy still
/// format and no `quality` in the request (an explicit one always wins).
pub fn target_for(spec: &Spec, format: Format, settings: &Settings) -> Option<f64> {
    let target = settings.target_quality?;
    (spec.quality.is_none() && format.is_lossy()).then_some(f64::from(target))
}

/// The most bytes a search holds at once, the image included: the image handed to the
/// encoder (kept for every trial), the smallest passing output and the trial's (under one
/// frame together), and the larger of a trial's encode (of a copy of the image) beside the
/// scorer's reference, and its decode with the scoring (of an 8-bit copy of the trial).
///
/// Scored whole, the scorer's reference is held through the encodes; scored in strips, the
/// image's 8-bit copy is, and each comparison converts both sides anew.
pub fn search_cost(format: Format, (width, height): (u32, u32), alpha: bool) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let frame = pixels * if alpha { 4 } else { 3 };
    let (held, comparing) = if pixels <= SCORE_MAX_PIXELS {
        (SCORE_REFERENCE_BYTES_PER_PIXEL, SCORE_BYTES_PER_PIXEL)
    } else {
        let strip = u64::from(width) * STRIP_BYTES_PER_COLUMN;
        (3, STRIP_BYTES_PER_PIXEL + 3 + strip.div_ceil(pixels))
    };
    let encoding = codec::encode_cost(format, (width, height), alpha) + pixels * held;
    let scoring = pixels * (TRIAL_DECODE_BYTES_PER_PIXEL + comparing + 3);
    2 * frame + encoding.max(scoring)
}

/// One trial: its quality, output length and score.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trial {
    q: u8,
    len: usize,
    score: f64,
}

/// What the search found.
#[derive(Debug)]
pub struct Found {
    pub bytes: Vec<u8>,
    pub quality: u8,
    pub score: f64,
    pub trials: usize,
    /// Whether `bytes` reach the target (else they are the highest quality tried).
    pub reached: bool,
}

/// Encodes `image` as `request` says, at the quality the search finds for `target`,
/// starting from `request.quality`.
pub fn encode(image: DynamicImage, request: &EncodeRequest<'_>, target: f64) -> Result<Found> {
    let (w, h) = (image.width(), image.height());
    if w < 8 || h < 8 {
        // SSIMULACRA2's pyramid needs 8×8 (fast-ssim2 would pad): too small to matter.
        let bytes = codec::encode(image, request)?;
        return Ok(Found {
            bytes,
            quality: request.quality,
            score: f64::NAN,
            trials: 1,
            reached: false,
        });
    }
    let scorer = Scorer::new(&image)?;
    let found = search(request.quality, target, |q| {
        let bytes = codec::encode(
            image.clone(),
            &EncodeRequest {
                quality: q,
                ..*request
            },
        )?;
        let header = codec::probe(&bytes)?;
        let decoded = codec::decode(&bytes, &header, DecodeRequest::default())?;
        let score = scorer.score(&to_scored(&decoded.image))?;
        Ok((bytes, score))
    })?;
    if !found.reached {
        tracing::debug!(
            "target quality {target}: not reached by {} at quality {} (SSIMULACRA2 {:.1}, {w}x{h}, {} trials)",
            request.format.name(),
            found.quality,
            found.score,
            found.trials
        );
    }
    Ok(found)
}

/// The search itself (module docs), over `trial(q) -> (output, score)`.
fn search(
    start: u8,
    target: f64,
    mut trial: impl FnMut(u8) -> Result<(Vec<u8>, f64)>,
) -> Result<Found> {
    let (mut pass, mut fail): (Option<Trial>, Option<Trial>) = (None, None);
    // The smallest passing output, else the highest quality's.
    let mut kept: Option<(Trial, Vec<u8>)> = None;
    let mut q = start.clamp(1, 100);
    let mut step = FIRST_STEP;
    let mut trials = 0;
    loop {
        let (bytes, score) = trial(q)?;
        trials += 1;
        let t = Trial {
            q,
            len: bytes.len(),
            score,
        };
        let passed = score >= target;
        let better = match &kept {
            None => true,
            Some((k, _)) if k.score >= target => passed && t.len < k.len,
            Some((k, _)) => passed || t.q > k.q,
        };
        if better {
            kept = Some((t, bytes));
        }
        if passed {
            pass = Some(pass.filter(|p| p.q < q).unwrap_or(t));
        } else {
            fail = Some(fail.filter(|f| f.q > q).unwrap_or(t));
        }
        let lo = fail.map_or(1, |f| f.q + 1);
        let hi = pass.map_or(100, |p| p.q - 1);
        if trials >= MAX_TRIALS || lo > hi {
            break;
        }
        q = match (fail, pass) {
            (Some(f), Some(p)) if p.score > f.score => {
                let at = f64::from(f.q)
                    + (target - f.score) / (p.score - f.score) * f64::from(p.q - f.q);
                (at.ceil() as u8).clamp(lo, hi)
            }
            (Some(_), Some(_)) => lo + (hi - lo) / 2,
            (None, Some(p)) => p.q.saturating_sub(step).max(lo),
            (Some(f), None) => f.q.saturating_add(step).min(hi),
            (None, None) => unreachable!("a trial either passed or failed"),
        };
        step = step.saturating_mul(2);
    }
    let (t, bytes) = kept.expect("at least one trial ran");
    Ok(Found {
        bytes,
        quality: t.q,
        score: t.score,
        trials,
        reached: t.score >= target,
    })
}

/// What trials are scored against: the image's reference half of the metric when it is
/// scored whole, or its 8-bit pixels (borrowed when it is 8-bit RGB) when it is scored in
/// strips (module docs).
enum Scorer<'a> {
    Whole(Ssimulacra2Reference),
    Strips(Cow<'a, RgbImage>),
}

impl<'a> Scorer<'a> {
    fn new(image: &'a DynamicImage) -> Result<Scorer<'a>> {
        let source = to_scored(image);
        let pixels = u64::from(source.width()) * u64::from(source.height());
        if pixels > SCORE_MAX_PIXELS {
            return Ok(Scorer::Strips(source));
        }
        Ssimulacra2Reference::new(&self::pixels(&source)?)
            .map(Scorer::Whole)
            .map_err(|e| Error::Encode(format!("ssimulacra2: {e}")))
    }

    /// The SSIMULACRA2 score of `distorted` against the image.
    fn score(&self, distorted: &RgbImage) -> Result<f64> {
        match self {
            Scorer::Whole(reference) => reference.compare(&pixels(distorted)?),
            Scorer::Strips(source) => compute_ssimulacra2_with_config(
                &pixels(source)?,
                &pixels(distorted)?,
                &Ssimulacra2Config::simd().with_strip(StripConfig::new(SCORE_STRIP_ROWS)),
            ),
        }
        .map_err(|e| Error::Encode(format!("ssimulacra2: {e}")))
    }
}

/// `image` as it is scored: on white if it has alpha, 8-bit sRGB; 8-bit RGB as it is.
fn to_scored(image: &DynamicImage) -> Cow<'_, RgbImage> {
    match image {
        DynamicImage::ImageRgb8(rgb) => Cow::Borrowed(rgb),
        _ if image.color().has_alpha() => Cow::Owned(codec::flatten_on_white(image).into_rgb8()),
        _ => Cow::Owned(image.to_rgb8()),
    }
}

/// `image`'s bytes as the scorer reads them (sRGB, BT.709 primaries, no copy).
fn pixels(image: &RgbImage) -> Result<PixelSlice<'_>> {
    let stride = image.width() as usize * 3;
    PixelSlice::new(
        image.as_raw(),
        image.width(),
        image.height(),
        stride,
        PixelDescriptor::RGB8_SRGB,
    )
    .map_err(|e| Error::Encode(format!("ssimulacra2 input: {e}")))
}

#[cfg(test)]
mod tests;
