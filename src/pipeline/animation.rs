//! Animated GIF and WebP: frame-wise operations keep every frame and its timing.
//!
//! resize, crop, indexcrop, flip and rotations by multiples of 90° are applied to every
//! frame; a chain with any other operation, or a still output format, uses the first frame.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, Frame, ImageDecoder, RgbaImage};

use crate::error::{Error, Result};
use crate::spec::{Format, Op};

pub(super) struct Animation {
    pub frames: Vec<(RgbaImage, u32)>,
}

/// Whether `op` can run on each frame independently and keep frames the same size.
pub(super) fn is_framewise(op: &Op) -> bool {
    match op {
        Op::Resize(_) | Op::Crop(_) | Op::IndexCrop(_) | Op::Flip(_) => true,
        Op::Rotate(degrees) => degrees % 90 == 0,
        _ => false,
    }
}

pub(super) fn can_animate(format: Format) -> bool {
    matches!(format, Format::Gif | Format::Webp)
}

/// Decodes every frame, composited to full canvas size, with its delay in milliseconds.
pub(super) fn decode(bytes: &[u8], format: Format) -> Result<Animation> {
    let fail = |e: image::ImageError| Error::Decode(format!("{}: {e}", format.name()));
    let limits = super::codec::decoder_limits;
    let frames = match format {
        Format::Gif => {
            let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(fail)?;
            decoder.set_limits(limits()).map_err(fail)?;
            decoder.into_frames()
        }
        Format::Webp => {
            let mut decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(fail)?;
            decoder.set_limits(limits()).map_err(fail)?;
            decoder.into_frames()
        }
        _ => unreachable!("only GIF and WebP animate"),
    };
    let mut out = Vec::new();
    for frame in frames {
        let frame = frame.map_err(fail)?;
        let (num, den) = frame.delay().numer_denom_ms();
        out.push((frame.into_buffer(), num / den.max(1)));
    }
    if out.is_empty() {
        return Err(Error::Decode(format!("{}: no frames", format.name())));
    }
    Ok(Animation { frames: out })
}

/// Applies `apply` to every frame.
pub(super) fn map_frames(
    animation: Animation,
    mut apply: impl FnMut(DynamicImage) -> Result<DynamicImage>,
) -> Result<Animation> {
    let frames = animation
        .frames
        .into_iter()
        .map(|(image, delay)| Ok((apply(DynamicImage::ImageRgba8(image))?.to_rgba8(), delay)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Animation { frames })
}

pub(super) fn encode(animation: &Animation, format: Format, quality: u8) -> Result<Vec<u8>> {
    let fail = |e: String| Error::Encode(format!("{}: {e}", format.name()));
    match format {
        Format::Gif => {
            let mut out = Vec::new();
            {
                let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
                encoder
                    .set_repeat(Repeat::Infinite)
                    .map_err(|e| fail(e.to_string()))?;
                let frames = animation.frames.iter().map(|(image, delay)| {
                    Frame::from_parts(
                        image.clone(),
                        0,
                        0,
                        image::Delay::from_numer_denom_ms(*delay, 1),
                    )
                });
                encoder
                    .encode_frames(frames)
                    .map_err(|e| fail(e.to_string()))?;
            }
            Ok(out)
        }
        Format::Webp => {
            let (w, h) = animation.frames[0].0.dimensions();
            let mut config = webp::WebPConfig::new().map_err(|()| fail("libwebp config".into()))?;
            config.quality = f32::from(quality);
            config.method = super::codec::WEBP_METHOD;
            let mut encoder = webp::AnimEncoder::new(w, h, &config);
            encoder.set_loop_count(0);
            let mut timestamp = 0i32;
            for (image, delay) in &animation.frames {
                encoder.add_frame(webp::AnimFrame::from_rgba(image.as_raw(), w, h, timestamp));
                timestamp = timestamp.saturating_add(*delay as i32);
            }
            let memory = encoder.try_encode().map_err(|e| fail(format!("{e:?}")))?;
            Ok(memory.to_vec())
        }
        _ => unreachable!("only GIF and WebP animate"),
    }
}
