//! JPEG through libjpeg-turbo: SIMD decode with DCT-domain shrink-on-load, SIMD encode with
//! optimised Huffman tables and optional progressive scans.

use image::metadata::Orientation;
use image::DynamicImage;
use img_parts::jpeg::Jpeg;
use img_parts::{Bytes, ImageEXIF, ImageICC};
use turbojpeg::{
    Colorspace, Compressor, Decompressor, PixelFormat, ScalingFactor, Subsamp, YuvImage,
};

use super::{decode_error, encode_error, Cost, DecodeRequest, Decoded, EncodeRequest, Header};
use crate::error::Result;
use crate::spec::Format;

pub(super) fn probe(bytes: &[u8]) -> Result<Header> {
    let header = turbojpeg::read_header(bytes).map_err(|e| decode_error(Format::Jpeg, e))?;
    Ok(Header {
        format: Format::Jpeg,
        width: header.width as u32,
        height: header.height as u32,
        frames: 1,
        orientation: exif_segment(bytes)
            .and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms),
        coded: None,
        deep: false,
    })
}

/// The marker segments before the image data, as (marker, body); never copies the file.
fn segments(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 2;
    std::iter::from_fn(move || {
        if pos + 4 > bytes.len() || bytes[pos] != 0xFF {
            return None;
        }
        let marker = bytes[pos + 1];
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        if marker == 0xDA || len < 2 {
            return None;
        }
        let body = bytes.get(pos + 4..pos + 2 + len)?;
        pos += 2 + len;
        Some((marker, body))
    })
}

/// The APPn segments before the image data.
fn app_segments(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    segments(bytes).filter(|(marker, _)| (0xE0..=0xEF).contains(marker))
}

/// Bytes of DCT coefficients libjpeg keeps for the whole image while decoding a
/// progressive JPEG (all scans must arrive before any pixel): 128 per 8×8 block of every
/// component, whatever the output scale. Zero for sequential JPEGs, decoded row by row.
fn progressive_coefficient_bytes(bytes: &[u8]) -> u64 {
    // SOF2, SOF6, SOF10, SOF14 are the progressive frame headers.
    let Some((_, sof)) = segments(bytes).find(|(m, _)| matches!(m, 0xC2 | 0xC6 | 0xCA | 0xCE))
    else {
        return 0;
    };
    let (Some(&[hi_h, lo_h, hi_w, lo_w, count]), Some(specs)) = (sof.get(1..6), sof.get(6..))
    else {
        return 0;
    };
    let (height, width) = (
        u64::from(u16::from_be_bytes([hi_h, lo_h])),
        u64::from(u16::from_be_bytes([hi_w, lo_w])),
    );
    let factors: Vec<(u64, u64)> = specs
        .chunks_exact(3)
        .take(usize::from(count))
        .map(|c| (u64::from(c[1] >> 4).max(1), u64::from(c[1] & 15).max(1)))
        .collect();
    let max_h = factors.iter().map(|f| f.0).max().unwrap_or(1);
    let max_v = factors.iter().map(|f| f.1).max().unwrap_or(1);
    // Blocks per component, padded to whole MCUs as libjpeg allocates them.
    let (mcus_w, mcus_h) = (width.div_ceil(8 * max_h), height.div_ceil(8 * max_v));
    factors
        .iter()
        .map(|(h, v)| mcus_w * h * mcus_h * v * 128)
        .sum()
}

/// The decoded size for `min_size`, and the most bytes the decoder holds for it.
pub(super) fn decode_cost(bytes: &[u8], header: &Header, min_size: Option<(u32, u32)>) -> Cost {
    let factor = scaling_factor(header.width, header.height, min_size);
    let size = (
        factor.scale(header.width as usize) as u32,
        factor.scale(header.height as usize) as u32,
    );
    let frame = u64::from(size.0) * u64::from(size.1) * 3;
    Cost {
        size,
        bytes: frame + progressive_coefficient_bytes(bytes),
    }
}

/// The TIFF data of the first APP1 `Exif` segment.
pub(super) fn exif_segment(bytes: &[u8]) -> Option<&[u8]> {
    app_segments(bytes)
        .filter(|(marker, _)| *marker == 0xE1)
        .find_map(|(_, body)| body.strip_prefix(b"Exif\0\0"))
}

/// The ICC profile, reassembled from its APP2 `ICC_PROFILE` chunks in sequence order.
fn icc_profile(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut chunks: Vec<(u8, &[u8])> = app_segments(bytes)
        .filter(|(marker, _)| *marker == 0xE2)
        .filter_map(|(_, body)| body.strip_prefix(b"ICC_PROFILE\0"))
        .filter_map(|rest| Some((*rest.first()?, rest.get(2..)?)))
        .collect();
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|(seq, _)| *seq);
    Some(
        chunks
            .into_iter()
            .flat_map(|(_, data)| data.iter().copied())
            .collect(),
    )
}

/// Scans a progressive JPEG may have: each scan is a pass over the whole coefficient buffer,
/// so a small file of thousands of tiny scans would keep a worker busy for minutes
/// (libjpeg-turbo's "Two Issues with the JPEG Standard"). Encoders write 10 (libjpeg's
/// script) to about 20 (mozjpeg); more is refused (EIO) before it is decoded further.
pub const MAX_SCANS: u32 = 100;

pub(super) fn decode(bytes: &[u8], header: &Header, request: DecodeRequest) -> Result<Decoded> {
    let (icc, exif) = metadata(bytes);
    let mut decompressor = Decompressor::new().map_err(|e| decode_error(Format::Jpeg, e))?;
    let info = decompressor
        .read_header(bytes)
        .map_err(|e| decode_error(Format::Jpeg, e))?;
    if matches!(info.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        // libjpeg-turbo cannot convert CMYK to RGB; the image crate's decoder can.
        let mut decoded = super::raster::decode(bytes, Format::Jpeg)?;
        decoded.icc = icc;
        decoded.exif = exif;
        return Ok(decoded);
    }
    let factor = scaling_factor(header.width, header.height, request.min_size);
    decompressor
        .set_scaling_factor(factor)
        .map_err(|e| decode_error(Format::Jpeg, e))?;
    decompressor
        .set_scan_limit(MAX_SCANS)
        .map_err(|e| decode_error(Format::Jpeg, e))?;
    let scaled = info.scaled(factor);
    let (width, height) = (scaled.width, scaled.height);
    let mut pixels = vec![0u8; width * height * 3];
    let output = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width,
        pitch: width * 3,
        height,
        format: PixelFormat::RGB,
    };
    decompressor
        .decompress(bytes, output)
        .map_err(|e| decode_error(Format::Jpeg, e))?;
    let image = image::RgbImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| decode_error(Format::Jpeg, "decoded buffer has the wrong size"))?;
    Ok(Decoded {
        image: DynamicImage::ImageRgb8(image),
        icc,
        exif,
        oriented: false,
    })
}

/// The largest power-of-two reduction (1/2, 1/4, 1/8) that keeps both sides ≥ `min_size`.
fn scaling_factor(width: u32, height: u32, min_size: Option<(u32, u32)>) -> ScalingFactor {
    let Some((min_w, min_h)) = min_size else {
        return ScalingFactor::ONE;
    };
    for denom in [8usize, 4, 2] {
        let factor = ScalingFactor::new(1, denom);
        // libjpeg-turbo rounds scaled sides up.
        let (w, h) = (factor.scale(width as usize), factor.scale(height as usize));
        if w >= min_w as usize && h >= min_h as usize {
            return factor;
        }
    }
    ScalingFactor::ONE
}

/// The ICC profile and EXIF block of a JPEG, if it carries them.
pub(super) fn metadata(bytes: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (icc_profile(bytes), exif_segment(bytes).map(<[u8]>::to_vec))
}

pub(super) fn encode(image: DynamicImage, request: &EncodeRequest<'_>) -> Result<Vec<u8>> {
    let fail = |e: turbojpeg::Error| encode_error(Format::Jpeg, e);
    // The pipeline's images are RGB8 or RGBA8 (flattened before a JPEG encode).
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    let mut compressor = Compressor::new().map_err(fail)?;
    let quality = i32::from(request.quality);
    let subsamp = if quality >= 90 {
        Subsamp::None
    } else {
        Subsamp::Sub2x2
    };
    compressor.set_quality(quality).map_err(fail)?;
    compressor.set_subsamp(subsamp).map_err(fail)?;
    compressor.set_optimize(true).map_err(fail)?;
    compressor
        .set_progressive(request.progressive)
        .map_err(fail)?;
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let bytes = if subsamp == Subsamp::Sub2x2 {
        // Optimised Huffman tables make libjpeg keep every DCT coefficient (one frame's worth):
        // convert to YCbCr 4:2:0 first, with libjpeg-turbo's own converter (the same bytes as
        // compressing RGB, but for the padding of a last partial MCU), and free the RGB frame,
        // so the encode peaks at 1.5 frames, not 2.
        let yuv = rgb_to_yuv420(&rgb)?;
        drop(rgb);
        let image = YuvImage {
            pixels: yuv.as_slice(),
            width,
            align: 1,
            height,
            subsamp,
        };
        compressor.compress_yuv_to_vec(image).map_err(fail)?
    } else {
        let input = turbojpeg::Image {
            pixels: rgb.as_raw().as_slice(),
            width,
            pitch: width * 3,
            height,
            format: PixelFormat::RGB,
        };
        compressor.compress_to_vec(input).map_err(fail)?
    };
    if request.icc.is_none() && request.exif.is_none() {
        return Ok(bytes);
    }
    let mut jpeg =
        Jpeg::from_bytes(Bytes::from(bytes)).map_err(|e| encode_error(Format::Jpeg, e))?;
    jpeg.set_icc_profile(request.icc.map(Bytes::copy_from_slice));
    jpeg.set_exif(request.exif.map(Bytes::copy_from_slice));
    Ok(jpeg.encoder().bytes().to_vec())
}

/// IJG's luminance quantisation table in natural order (JPEG Annex K).
/// YCbCr 4:2:0 planes (rows unpadded) of `rgb`, as libjpeg-turbo converts for compression.
fn rgb_to_yuv420(rgb: &image::RgbImage) -> Result<Vec<u8>> {
    use turbojpeg_sys as raw;
    let fail = |what: &str| encode_error(Format::Jpeg, what);
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let len = turbojpeg::yuv_pixels_len(width, 1, height, Subsamp::Sub2x2)
        .map_err(|e| encode_error(Format::Jpeg, e))?;
    let mut yuv = vec![0u8; len];
    let pitch = i32::try_from(width * 3).map_err(|_| fail("image too wide"))?;
    // SAFETY: the handle is used only between its null check and tj3Destroy, once. The source
    // is an RgbImage: exactly `height` rows of `pitch` = width × 3 bytes; yuv_pixels_len
    // checked that width and height fit an i32 (so the casts are exact), and `yuv` has the
    // tj3YUVBufSize(width, 1, height, 4:2:0) bytes that tj3EncodeYUV8 writes with align 1.
    let status = unsafe {
        let handle = raw::tj3Init(raw::TJINIT_TJINIT_COMPRESS as i32);
        if handle.is_null() {
            return Err(fail("libjpeg-turbo: no handle"));
        }
        let status = if raw::tj3Set(
            handle,
            raw::TJPARAM_TJPARAM_SUBSAMP as i32,
            raw::TJSAMP_TJSAMP_420,
        ) == 0
        {
            raw::tj3EncodeYUV8(
                handle,
                rgb.as_ptr(),
                width as i32,
                pitch,
                height as i32,
                raw::TJPF_TJPF_RGB,
                yuv.as_mut_ptr(),
                1,
            )
        } else {
            -1
        };
        raw::tj3Destroy(handle);
        status
    };
    if status != 0 {
        return Err(fail("libjpeg-turbo: RGB to YCbCr failed"));
    }
    Ok(yuv)
}

const IJG_LUMA: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// Zig-zag position k holds natural index ZIGZAG[k].
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The IJG quality (1..=100) whose scaled luminance table is nearest the file's table 0,
/// as ImageMagick and OSS's `q_` do; None if the file has no 8-bit DQT for table 0.
pub fn estimate_quality(bytes: &[u8]) -> Option<u8> {
    let table = luma_table(bytes)?;
    (1u32..=100)
        .min_by_key(|&q| {
            let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
            (0..64)
                .map(|k| {
                    let std = u32::from(IJG_LUMA[ZIGZAG[k]]);
                    let expected = ((std * scale + 50) / 100).clamp(1, 255);
                    expected.abs_diff(u32::from(table[k]))
                })
                .sum::<u32>()
        })
        .map(|q| q as u8)
}

/// Table 0 of the first DQT segments, in zig-zag order.
fn luma_table(bytes: &[u8]) -> Option<[u16; 64]> {
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return None;
        }
        let marker = bytes[pos + 1];
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let body = bytes.get(pos + 4..pos + 2 + len)?;
        if marker == 0xDA {
            return None; // start of scan: no DQT before the image data
        }
        if marker == 0xDB {
            let mut i = 0;
            while i < body.len() {
                let (precision, id) = (body[i] >> 4, body[i] & 0x0F);
                let size = if precision == 0 { 64 } else { 128 };
                let values = body.get(i + 1..i + 1 + size)?;
                if id == 0 {
                    let mut table = [0u16; 64];
                    for (k, slot) in table.iter_mut().enumerate() {
                        *slot = if precision == 0 {
                            u16::from(values[k])
                        } else {
                            u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
                        };
                    }
                    return Some(table);
                }
                i += 1 + size;
            }
        }
        pos += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progressive_jpeg_of_more_scans_than_the_limit_is_refused() {
        // Hostile review of 2026-12-03: no scan limit was set.
        let rgb = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let mut c = Compressor::new().unwrap();
        c.set_progressive(true).unwrap();
        let jpeg = c
            .compress_to_vec(turbojpeg::Image {
                pixels: rgb.as_raw().as_slice(),
                width: 64,
                pitch: 64 * 3,
                height: 48,
                format: PixelFormat::RGB,
            })
            .unwrap();
        // The last scan (from its SOS marker to EOI), repeated: libjpeg-turbo warns of a
        // bogus progression and goes on, scan after scan, to the end of the file (TurboJPEG
        // reports the warning only then).
        let sos = jpeg.windows(2).rposition(|m| m == [0xFF, 0xDA]).unwrap();
        let (body, eoi) = jpeg.split_at(jpeg.len() - 2);
        let with_scans = |copies: usize| {
            let mut out = body.to_vec();
            for _ in 0..copies {
                out.extend_from_slice(&body[sos..]);
            }
            out.extend_from_slice(eoi);
            out
        };
        let header = probe(&jpeg).unwrap();
        let full = DecodeRequest {
            min_size: None,
            auto_orient: true,
        };
        let message = |copies| match decode(&with_scans(copies), &header, full) {
            Ok(_) => String::new(),
            Err(err) => err.to_string(),
        };
        let few = message(5);
        assert!(few.contains("progression"), "{few}");
        let many = message(MAX_SCANS as usize);
        assert!(many.contains("more than 100 scans"), "{many}");
    }

    #[test]
    fn a_progressive_decode_costs_its_whole_coefficient_buffer() {
        let rgb = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let encoded = |progressive| {
            let mut c = Compressor::new().unwrap();
            c.set_subsamp(Subsamp::Sub2x2).unwrap();
            c.set_progressive(progressive).unwrap();
            c.compress_to_vec(turbojpeg::Image {
                pixels: rgb.as_raw().as_slice(),
                width: 64,
                pitch: 64 * 3,
                height: 48,
                format: PixelFormat::RGB,
            })
            .unwrap()
        };
        assert_eq!(progressive_coefficient_bytes(&encoded(false)), 0);
        // 4:2:0 in 16×16 MCUs: 8×6 luma blocks and 4×3 per chroma plane, 128 bytes each.
        let progressive = encoded(true);
        assert_eq!(
            progressive_coefficient_bytes(&progressive),
            (48 + 12 + 12) * 128
        );
        let header = probe(&progressive).unwrap();
        let cost = decode_cost(&progressive, &header, Some((16, 12)));
        assert_eq!(cost.size, (16, 12));
        assert_eq!(cost.bytes, 16 * 12 * 3 + (48 + 12 + 12) * 128);
    }

    /// The YCbCr detour that frees the RGB frame early changes no byte when the image fills
    /// whole 16×16 MCUs; otherwise only how the last partial MCU is padded (invisible pixels),
    /// so the decoded pixels stay within a step or two.
    #[test]
    fn encoding_through_ycbcr_planes_matches_an_rgb_encode() {
        for (width, height) in [(208u32, 112u32), (203, 117)] {
            let rgb = image::RgbImage::from_fn(width, height, |x, y| {
                image::Rgb([
                    (x * 7 % 256) as u8,
                    (y * 3 % 256) as u8,
                    ((x ^ y) % 256) as u8,
                ])
            });
            for progressive in [false, true] {
                let request = EncodeRequest {
                    format: Format::Jpeg,
                    quality: 80,
                    progressive,
                    heic_preset: "",
                    icc: None,
                    exif: None,
                };
                let ours = encode(DynamicImage::ImageRgb8(rgb.clone()), &request).unwrap();
                let mut direct = Compressor::new().unwrap();
                direct.set_quality(80).unwrap();
                direct.set_subsamp(Subsamp::Sub2x2).unwrap();
                direct.set_optimize(true).unwrap();
                direct.set_progressive(progressive).unwrap();
                let expected = direct
                    .compress_to_vec(turbojpeg::Image {
                        pixels: rgb.as_raw().as_slice(),
                        width: width as usize,
                        pitch: width as usize * 3,
                        height: height as usize,
                        format: PixelFormat::RGB,
                    })
                    .unwrap();
                if width % 16 == 0 && height % 16 == 0 {
                    assert!(ours == expected, "{width}×{height}: bytes differ");
                }
                let a = turbojpeg::decompress(&ours, PixelFormat::RGB).unwrap();
                let b = turbojpeg::decompress(&expected, PixelFormat::RGB).unwrap();
                let worst = a
                    .pixels
                    .iter()
                    .zip(&b.pixels)
                    .map(|(x, y)| x.abs_diff(*y))
                    .max();
                assert!(
                    worst <= Some(4),
                    "{width}×{height}: pixels differ by {worst:?}"
                );
            }
        }
    }

    #[test]
    fn quality_estimate_recovers_the_encoder_setting() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        }));
        for quality in [30u8, 50, 75, 85, 95] {
            let request = EncodeRequest {
                format: Format::Jpeg,
                quality,
                progressive: false,
                heic_preset: "",
                icc: None,
                exif: None,
            };
            let bytes = encode(image.clone(), &request).unwrap();
            assert_eq!(estimate_quality(&bytes), Some(quality));
        }
        assert_eq!(estimate_quality(b"not a jpeg"), None);
    }

    #[test]
    fn shrink_on_load_never_goes_below_the_target() {
        let f = scaling_factor(4000, 3000, Some((900, 675)));
        assert_eq!((f.num(), f.denom()), (1, 4));
        let f = scaling_factor(4000, 3000, Some((1001, 10)));
        assert_eq!((f.num(), f.denom()), (1, 2));
        let f = scaling_factor(4000, 3000, None);
        assert_eq!((f.num(), f.denom()), (1, 1));
    }
}
