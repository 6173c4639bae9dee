//! HEIC (HEVC via x265/libde265) and AVIF (AV1 via libaom/dav1d) through libheif.

use std::sync::LazyLock;

use image::metadata::Orientation;
use image::DynamicImage;
use libheif_rs::{
    color_profile_types, Channel, ColorProfileRaw, ColorSpace, CompressionFormat, DecodingOptions,
    EncoderParameterValue, EncoderQuality, HeifContext, Image, LibHeif, RgbChroma,
};

use super::{decode_error, encode_error, DecodeRequest, Decoded, EncodeRequest, Header};
use crate::error::Result;
use crate::spec::Format;

/// One library instance for the process: libheif's init/deinit is global and not free.
static LIBHEIF: LazyLock<LibHeif> = LazyLock::new(LibHeif::new);

/// The x265 presets, fastest first.
pub const X265_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];
/// Chosen by measurement (docs/benchmarks.md, "x265 presets"): on 9–20 MP photos at q50, 0.4–0.5× superfast's
/// time at -1% to +7% bytes and SSIMULACRA2 within 1%; at equal score as small as superfast.
pub const DEFAULT_X265_PRESET: &str = "ultrafast";
/// x265 options set on top of the preset for every HEIC encode, chosen by measurement
/// (docs/benchmarks.md, "HEIC tuning"): on 1024 px tiles of the benchmark photos they take
/// ultrafast from 1.17× to 1.09× the bytes of heif-enc's preset slow at equal SSIMULACRA2 and
/// DSSIM, at 0.33× (not 0.17×) its CPU time. RDOQ and sign hiding spend encoder time on fewer
/// bits; psycho-visual RD adds texture energy that both metrics count as error.
pub const X265_TUNING: [(&str, &str); 4] = [
    ("x265:rdoq-level", "2"),
    ("x265:signhide", "1"),
    ("x265:psy-rd", "0"),
    ("x265:psy-rdoq", "0"),
];
/// libaom speed for AVIF (0 slowest .. 9 fastest).
pub const AOM_SPEED: i32 = 7;

/// Initialises libheif (once per process) before raw libheif calls.
pub(super) fn init() {
    LazyLock::force(&LIBHEIF);
}

/// HEIF files are ISO-BMFF: `ftyp` with a brand naming the codec.
pub(super) fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = box_len.clamp(16, bytes.len().min(256));
    let mut brands = std::iter::once(&bytes[8..12]).chain(bytes[16..end].chunks_exact(4));
    let brands: Vec<&[u8]> = brands.by_ref().collect();
    if brands.iter().any(|b| matches!(*b, b"avif" | b"avis")) {
        Some(Format::Avif)
    } else if brands.iter().any(|b| {
        matches!(
            *b,
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1"
        )
    }) {
        Some(Format::Heic)
    } else {
        None
    }
}

fn context(bytes: &[u8], format: Format) -> Result<HeifContext<'_>> {
    HeifContext::read_from_bytes(bytes).map_err(|e| decode_error(format, e))
}

pub(super) fn probe(bytes: &[u8], format: Format) -> Result<Header> {
    let ctx = context(bytes, format)?;
    let handle = ctx
        .primary_image_handle()
        .map_err(|e| decode_error(format, e))?;
    Ok(Header {
        format,
        width: handle.width(),
        height: handle.height(),
        frames: 1,
        orientation: Orientation::NoTransforms,
    })
}

pub(super) fn decode(bytes: &[u8], request: DecodeRequest) -> Result<Decoded> {
    let format = super::detect(bytes).unwrap_or(Format::Heic);
    let ctx = context(bytes, format)?;
    let handle = ctx
        .primary_image_handle()
        .map_err(|e| decode_error(format, e))?;
    let has_alpha = handle.has_alpha_channel();
    let chroma = if has_alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let mut options = DecodingOptions::new();
    if let Some(options) = options.as_mut() {
        options.set_ignore_transformations(!request.auto_orient);
    }
    let decoded = LIBHEIF
        .decode(&handle, ColorSpace::Rgb(chroma), options)
        .map_err(|e| decode_error(format, e))?;
    let planes = decoded.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| decode_error(format, "no interleaved plane"))?;
    let channels = if has_alpha { 4 } else { 3 };
    let row = plane.width as usize * channels;
    let mut pixels = Vec::with_capacity(row * plane.height as usize);
    for y in 0..plane.height as usize {
        pixels.extend_from_slice(&plane.data[y * plane.stride..y * plane.stride + row]);
    }
    let image = if has_alpha {
        image::RgbaImage::from_raw(plane.width, plane.height, pixels).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(plane.width, plane.height, pixels).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| decode_error(format, "decoded buffer has the wrong size"))?;

    let icc = handle
        .color_profile_raw()
        .filter(|p| !p.data.is_empty())
        .map(|p| p.data);
    let exif = exif_of(&handle);
    Ok(Decoded {
        image,
        icc,
        exif,
        oriented: request.auto_orient,
    })
}

pub(super) fn read_exif(bytes: &[u8]) -> Option<Vec<u8>> {
    let ctx = HeifContext::read_from_bytes(bytes).ok()?;
    exif_of(&ctx.primary_image_handle().ok()?)
}

fn exif_of(handle: &libheif_rs::ImageHandle) -> Option<Vec<u8>> {
    let mut ids = [0; 1];
    (handle.metadata_block_ids(&mut ids, b"Exif") == 1)
        .then(|| handle.metadata(ids[0]).ok())
        .flatten()
        .and_then(|block| strip_exif_offset(&block))
}

/// HEIF's Exif item starts with a 4-byte offset to the TIFF header; imgfs passes raw TIFF.
fn strip_exif_offset(block: &[u8]) -> Option<Vec<u8>> {
    let offset = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
    block.get(4 + offset..).map(<[u8]>::to_vec)
}

pub(super) fn encode(image: &DynamicImage, request: &EncodeRequest<'_>) -> Result<Vec<u8>> {
    if super::heif_grid::wanted(image, request.format) {
        return super::heif_grid::encode(image, request);
    }
    let format = request.format;
    let fail = |e: libheif_rs::HeifError| encode_error(format, e);
    let (compression, chroma, channels) = match (format, image.color().has_alpha()) {
        (Format::Avif, alpha) => (CompressionFormat::Av1, chroma(alpha), channels(alpha)),
        (_, alpha) => (CompressionFormat::Hevc, chroma(alpha), channels(alpha)),
    };
    let (width, height) = (image.width(), image.height());
    let mut heif_image = Image::new(width, height, ColorSpace::Rgb(chroma)).map_err(fail)?;
    heif_image
        .create_plane(Channel::Interleaved, width, height, 8)
        .map_err(fail)?;
    {
        let planes = heif_image.planes_mut();
        let plane = planes
            .interleaved
            .ok_or_else(|| encode_error(format, "no interleaved plane"))?;
        let row = width as usize * channels;
        for (y, src) in image.as_bytes().chunks_exact(row).enumerate() {
            plane.data[y * plane.stride..y * plane.stride + row].copy_from_slice(src);
        }
    }
    if let Some(icc) = request.icc {
        heif_image
            .set_color_profile_raw(&ColorProfileRaw::new(
                color_profile_types::PROF,
                icc.to_vec(),
            ))
            .map_err(fail)?;
    }

    let mut encoder = LIBHEIF.encoder_for_format(compression).map_err(fail)?;
    encoder
        .set_quality(EncoderQuality::Lossy(request.quality))
        .map_err(fail)?;
    match compression {
        CompressionFormat::Hevc => {
            encoder
                .set_parameter_value(
                    "preset",
                    EncoderParameterValue::String(request.heic_preset.into()),
                )
                .map_err(fail)?;
            for (name, value) in X265_TUNING {
                encoder
                    .set_parameter_value(name, EncoderParameterValue::String(value.into()))
                    .map_err(fail)?;
            }
        }
        _ => encoder
            .set_parameter_value("speed", EncoderParameterValue::Int(AOM_SPEED))
            .map_err(fail)?,
    }
    let mut ctx = HeifContext::new().map_err(fail)?;
    let handle = ctx
        .encode_image(&heif_image, &mut encoder, None)
        .map_err(fail)?;
    if let Some(exif) = request.exif {
        ctx.add_exif_metadata(&handle, exif).map_err(fail)?;
    }
    ctx.write_to_bytes().map_err(fail)
}

fn chroma(alpha: bool) -> RgbChroma {
    if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    }
}

fn channels(alpha: bool) -> usize {
    if alpha {
        4
    } else {
        3
    }
}
