//! PNG, GIF, BMP, TIFF (and WebP decoding) through the image crate.

use std::io::Cursor;

use image::codecs::gif::GifEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, ImageReader};
use img_parts::png::Png;
use img_parts::{Bytes, ImageEXIF, ImageICC};

use super::{decode_error, encode_error, Decoded, EncodeRequest, Header};
use crate::error::{Error, Result};
use crate::limits::MAX_ICC_BYTES;
use crate::spec::Format;

fn image_format(format: Format) -> ImageFormat {
    match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::Gif => ImageFormat::Gif,
        Format::Webp => ImageFormat::WebP,
        Format::Bmp => ImageFormat::Bmp,
        Format::Tiff => ImageFormat::Tiff,
        Format::Heic | Format::Avif => unreachable!("HEIF is libheif's"),
    }
}

/// What a decoder may allocate at most: a frame of the default pixel limit in RGBA (1 GB).
/// It catches what a header hides, such as a GIF frame far larger than its canvas.
pub(crate) const MAX_DECODE_ALLOC: u64 = 1 << 30;

pub(crate) fn decoder_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

fn reader(bytes: &[u8], format: Format) -> Result<ImageReader<Cursor<&[u8]>>> {
    if format == Format::Png {
        check_png_profile(bytes)?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    // The header was checked against our limits already; these catch what a header hides.
    reader.limits(decoder_limits());
    Ok(reader)
}

/// A PNG's colour profile is deflated (iCCP), and the png crate inflates it as it reads
/// the header, before any estimate, up to the decoder's whole budget: a 1 MB file can
/// hold a 1 GB profile. Refused here, before a decoder exists, beyond [`MAX_ICC_BYTES`].
fn check_png_profile(bytes: &[u8]) -> Result<()> {
    let Some(chunk) = png_chunk(bytes, b"iCCP") else {
        return Ok(());
    };
    // Profile name (1–79 bytes), NUL, compression method (0: zlib), then the stream.
    let stream = chunk
        .iter()
        .position(|&b| b == 0)
        .and_then(|nul| chunk.get(nul + 2..))
        .unwrap_or_default();
    match fdeflate::decompress_to_vec_bounded(stream, MAX_ICC_BYTES) {
        Err(fdeflate::BoundedDecompressionError::OutputTooLarge { .. }) => Err(Error::TooLarge(
            format!("PNG colour profile (iCCP) inflates past {MAX_ICC_BYTES} bytes"),
        )),
        // A damaged profile is the decoder's to judge (it ignores one it cannot read).
        _ => Ok(()),
    }
}

/// The data of the first chunk of `kind` before the image data, if any.
fn png_chunk<'a>(bytes: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut at = 8; // the signature
    loop {
        let len = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        let name = bytes.get(at + 4..at + 8)?;
        if name == b"IDAT" || name == b"IEND" {
            return None;
        }
        let data = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
        if name == kind {
            return Some(data);
        }
        at += 12 + len; // length, type, data, CRC
    }
}

/// A decoder refusing on its own limits (a header claiming more than `max_alloc`) is the
/// source exceeding a limit (EFBIG), not an undecodable file (EIO).
fn image_error(format: Format, err: image::ImageError) -> Error {
    match err {
        image::ImageError::Limits(limit) => Error::TooLarge(format!("{}: {limit}", format.name())),
        other => decode_error(format, other),
    }
}

pub(super) fn probe(bytes: &[u8], format: Format) -> Result<Header> {
    if format == Format::Jpeg {
        return super::jpeg::probe(bytes);
    }
    let mut decoder = reader(bytes, format)?
        .into_decoder()
        .map_err(|e| image_error(format, e))?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let frames = match format {
        Format::Gif => count_gif_frames(bytes),
        Format::Webp => count_webp_frames(bytes),
        _ => 1,
    };
    Ok(Header {
        format,
        width,
        height,
        frames,
        orientation,
        coded: None,
        deep: false,
    })
}

pub(super) fn read_exif(bytes: &[u8], format: Format) -> Option<Vec<u8>> {
    let mut decoder = reader(bytes, format).ok()?.into_decoder().ok()?;
    decoder.exif_metadata().ok().flatten()
}

pub(super) fn decode(bytes: &[u8], format: Format) -> Result<Decoded> {
    let mut decoder = reader(bytes, format)?
        .into_decoder()
        .map_err(|e| image_error(format, e))?;
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(format, e))?;
    Ok(Decoded {
        image,
        icc,
        exif,
        oriented: false,
    })
}

pub(super) fn encode(image: &DynamicImage, request: &EncodeRequest<'_>) -> Result<Vec<u8>> {
    let format = request.format;
    let mut out = Vec::new();
    let (w, h, color) = (image.width(), image.height(), image.color());
    let result = match format {
        Format::Png => {
            PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
                .write_image(image.as_bytes(), w, h, color.into())
        }
        Format::Gif => {
            let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
            encoder.encode_frame(image::Frame::new(image.to_rgba8()))
        }
        Format::Bmp => image.write_to(&mut Cursor::new(&mut out), ImageFormat::Bmp),
        Format::Tiff if color.has_alpha() => {
            return encode_tiff_with_alpha(&image.to_rgba8()).map_err(|e| encode_error(format, e));
        }
        Format::Tiff => image.write_to(&mut Cursor::new(&mut out), ImageFormat::Tiff),
        _ => unreachable!("{format:?} has its own encoder"),
    };
    result.map_err(|e| encode_error(format, e))?;
    if format == Format::Png && (request.icc.is_some() || request.exif.is_some()) {
        let mut png = Png::from_bytes(Bytes::from(out)).map_err(|e| encode_error(format, e))?;
        png.set_icc_profile(request.icc.map(Bytes::copy_from_slice));
        png.set_exif(request.exif.map(Bytes::copy_from_slice));
        return Ok(png.encoder().bytes().to_vec());
    }
    Ok(out)
}

/// RGBA TIFF that declares its 4th channel as alpha (ExtraSamples = unassociated alpha);
/// the image crate's encoder leaves it unspecified, which readers may not take as alpha.
fn encode_tiff_with_alpha(rgba: &image::RgbaImage) -> tiff::TiffResult<Vec<u8>> {
    use tiff::encoder::{colortype, TiffEncoder};
    let mut out = Vec::new();
    let mut encoder = TiffEncoder::new(Cursor::new(&mut out))?;
    let mut tiff = encoder.new_image::<colortype::RGB8>(rgba.width(), rgba.height())?;
    tiff.extra_samples(&[tiff::tags::ExtraSamples::UnassociatedAlpha])?;
    tiff.write_data(rgba.as_raw())?;
    Ok(out)
}

/// Counts image descriptors by walking the GIF's blocks without decompressing anything.
pub(super) fn count_gif_frames(bytes: &[u8]) -> u64 {
    let skip_sub_blocks = |mut pos: usize| -> Option<usize> {
        loop {
            let len = usize::from(*bytes.get(pos)?);
            pos += 1 + len;
            if len == 0 {
                return Some(pos);
            }
        }
    };
    let walk = || -> Option<u64> {
        let flags = *bytes.get(10)?;
        let mut pos = 13;
        if flags & 0x80 != 0 {
            pos += 3 << ((flags & 0x07) + 1);
        }
        let mut frames = 0;
        loop {
            match *bytes.get(pos)? {
                0x2C => {
                    frames += 1;
                    let flags = *bytes.get(pos + 9)?;
                    pos += 10;
                    if flags & 0x80 != 0 {
                        pos += 3 << ((flags & 0x07) + 1);
                    }
                    pos = skip_sub_blocks(pos + 1)?; // LZW minimum code size, then data
                }
                0x21 => pos = skip_sub_blocks(pos + 2)?,
                0x3B => return Some(frames),
                _ => return Some(frames),
            }
        }
    };
    walk().unwrap_or(1).max(1)
}

/// Counts ANMF chunks of an animated WebP (1 for a still one).
pub(super) fn count_webp_frames(bytes: &[u8]) -> u64 {
    let mut pos = 12;
    let mut frames = 0u64;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        if id == b"ANMF" {
            frames += 1;
        }
        pos = pos.saturating_add(8 + len + (len & 1));
    }
    frames.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PNG chunk with its CRC.
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = 0xFFFF_FFFFu32;
        for &b in &out[start..] {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        out.extend_from_slice(&(!crc).to_be_bytes());
    }

    #[test]
    fn a_header_over_the_decoders_memory_limit_is_too_large_not_undecodable() {
        // 4e9 × 1 RGB: the image crate refuses at its 4 GiB max_alloc before imgfs sees
        // the dimensions; that refusal must be EFBIG like imgfs's own limits.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = 4_000_000_000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&1u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]);
        chunk(&mut png, b"IEND", &[]);
        assert_eq!(probe(&png, Format::Png).unwrap_err().errno(), libc::EFBIG);
        assert_eq!(
            decode(&png, Format::Png).err().unwrap().errno(),
            libc::EFBIG
        );
        // A broken file is still EIO.
        assert_eq!(
            probe(&png[..20], Format::Png).unwrap_err().errno(),
            libc::EIO
        );
    }

    #[test]
    fn a_png_colour_profile_that_inflates_past_the_limit_is_refused_before_decoding() {
        // Hostile review of 2026-12-03: the png crate inflated a deflated iCCP chunk up to
        // the decoder's 1 GiB budget while reading the header, before any estimate.
        let with_profile = |profile_len: usize| {
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            let mut ihdr = 1u32.to_be_bytes().to_vec();
            ihdr.extend_from_slice(&1u32.to_be_bytes());
            ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
            chunk(&mut png, b"IHDR", &ihdr);
            let mut iccp = b"bomb\0\0".to_vec();
            iccp.extend(fdeflate::compress_to_vec(&vec![0; profile_len]));
            chunk(&mut png, b"iCCP", &iccp);
            chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]);
            chunk(&mut png, b"IEND", &[]);
            png
        };
        let bomb = with_profile(MAX_ICC_BYTES + 1);
        assert!(bomb.len() < MAX_ICC_BYTES / 100, "{} bytes", bomb.len());
        for refused in [
            probe(&bomb, Format::Png).err(),
            decode(&bomb, Format::Png).err(),
        ] {
            let err = refused.expect("refused");
            assert_eq!(err.errno(), libc::EFBIG, "{err}");
        }
        assert!(probe(&with_profile(MAX_ICC_BYTES), Format::Png).is_ok());
    }

    /// Found by fuzzing: an 8×10 GIF whose first frame claims 29798×28793 px asked the
    /// decoder for 3.4 GB. The decoder's allocation cap turns it into EFBIG.
    #[test]
    fn a_gif_frame_larger_than_its_canvas_is_refused_without_allocating() {
        let input =
            include_bytes!("../../../fuzz/regressions/pipeline-gif-frame-larger-than-screen");
        let spec =
            crate::spec::Spec::parse("crop,w_10,h_10,g_center@format,gif", &Default::default())
                .unwrap();
        let err =
            crate::pipeline::convert(&input[1..], &Default::default(), &spec, &Default::default())
                .unwrap_err();
        assert!(matches!(err.errno(), libc::EFBIG | libc::EIO), "{err}");
    }
}
