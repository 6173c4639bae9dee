//! Decoders and encoders, one module per codec, behind three calls: probe, decode, encode.

mod heif;
mod heif_bounds;
mod heif_grid;
mod heif_replay;
mod jpeg;
mod raster;
mod webp;

use image::metadata::Orientation;
use image::DynamicImage;

use crate::error::{Error, Result};
use crate::limits::MAX_ICC_BYTES;
use crate::spec::Format;

pub use heif::{x265_preset, DEFAULT_HEIC_PRESET, HEIC_PRESETS};
pub use jpeg::estimate_quality as estimate_jpeg_quality;
pub(crate) use raster::decoder_limits;
pub use webp::METHOD as WEBP_METHOD;

/// Changes whenever an encoder setting changes the bytes of an output (a tuning, a codec
/// option), so the disk cache, whose keys include it, never serves bytes of older settings.
/// 2: x265 tuning on top of the preset, WebP filter strength 80, libaom speed 7 (issue 14).
/// 3: HEIC and AVIF qualities mapped to heif-enc's perceived quality (`heif::encoder_quality`).
/// 4: libaom quantisation matrices for AVIF (`heif::AOM_TUNING`).
/// 5: x265 RD level 1 at preset ultrafast (`heif::ULTRAFAST_TUNING`).
/// 6: x265 preset slow for pictures up to 1 MP under `--heic-preset auto` (`heif::x265_preset`).
/// 7: x265 chroma QP offsets −2 (`heif::X265_TUNING`).
pub const REVISION: u32 = 7;

/// What the header says, read before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    /// As stored (before EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    /// EXIF orientation; NoTransforms where the decoder orients by itself (HEIF).
    pub orientation: Orientation,
    /// What the decoder builds before the container's own transformations, where that is
    /// more than the image: a HEIF's `ispe`, which a `clap` crop makes larger (second hostile
    /// review of 2026-12-03: a 30000² `ispe` cropped to 64² was judged as 64²). None: as
    /// stored.
    pub coded: Option<(u32, u32)>,
    /// More than 8 bits a sample as coded (a HEIF's luma): the decoder's planes hold two
    /// bytes a sample before the 8-bit image is made.
    pub deep: bool,
}

impl Header {
    /// The size the decoder builds: [`Header::coded`], else as stored.
    pub fn coded_size(&self) -> (u32, u32) {
        self.coded.unwrap_or((self.width, self.height))
    }
}

/// A decoded still image, 8-bit RGB or RGBA, with the metadata that travels with it.
pub struct Decoded {
    pub image: DynamicImage,
    pub icc: Option<Vec<u8>>,
    pub exif: Option<Vec<u8>>,
    /// Whether the decoder already applied the orientation (HEIF's irot/imir always are,
    /// unless `auto-orient,0`).
    pub oriented: bool,
}

/// How to decode: at reduced scale where the JPEG decoder can, never below `min_size`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeRequest {
    /// Smallest acceptable (width, height) as stored; None = full size.
    pub min_size: Option<(u32, u32)>,
    /// Apply the container's own transformations (HEIF irot/imir).
    pub auto_orient: bool,
}

pub struct EncodeRequest<'a> {
    pub format: Format,
    /// 1..=100 for lossy formats.
    pub quality: u8,
    pub progressive: bool,
    /// `--heic-preset` for HEIC: an x265 preset (ultrafast .. placebo), or `auto`, which the
    /// HEIC encoder resolves by the picture's size ([`x265_preset`]).
    pub heic_preset: &'a str,
    pub icc: Option<&'a [u8]>,
    pub exif: Option<&'a [u8]>,
}

/// Recognises a format from its magic bytes (never from the file name).
pub fn detect(bytes: &[u8]) -> Option<Format> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if starts(b"BM") {
        Some(Format::Bmp)
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some(Format::Tiff)
    } else {
        heif::detect(bytes)
    }
}

pub fn probe(bytes: &[u8]) -> Result<Header> {
    let format =
        detect(bytes).ok_or_else(|| Error::Decode("not a recognised image format".into()))?;
    match format {
        Format::Heic | Format::Avif => heif::probe(bytes, format),
        _ => raster::probe(bytes, format),
    }
}

/// The source's EXIF (raw TIFF) without decoding pixels.
pub fn read_exif(bytes: &[u8], format: Format) -> Option<Vec<u8>> {
    match format {
        Format::Jpeg => jpeg::exif_segment(bytes).map(<[u8]>::to_vec),
        Format::Heic | Format::Avif => heif::read_exif(bytes),
        _ => raster::read_exif(bytes, format),
    }
}

/// What a decode will produce and hold, known from the header before any pixel exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// The decoded image's (width, height); JPEGs may decode at reduced scale.
    pub size: (u32, u32),
    /// The most bytes the decoder holds at once, the decoded image included.
    pub bytes: u64,
}

pub fn decode_cost(bytes: &[u8], header: &Header, request: &DecodeRequest) -> Cost {
    let size = (header.width, header.height);
    // RGBA, as anything but a JPEG may carry alpha.
    let frame = u64::from(size.0) * u64::from(size.1) * 4;
    match header.format {
        Format::Jpeg => jpeg::decode_cost(bytes, header, request.min_size),
        // libheif's YCbCr planes, its interleaved RGB(A) and the image made from it, all
        // at the coded size (before a crop). Planes of more than 8 bits take two bytes a
        // sample: a 10-bit 4:4:4 HEIC of 4.3 MP peaked 25.6 MB (6 bytes a pixel) above
        // its 8-bit twin (`/usr/bin/time -v imgfs convert … format,bmp`).
        Format::Heic | Format::Avif => {
            let (w, h) = header.coded_size();
            let coded = (u64::from(w) * u64::from(h) * 4).max(frame);
            let per_frame = if header.deep { (4, 1) } else { (5, 2) };
            Cost {
                size,
                bytes: coded * per_frame.0 / per_frame.1,
            }
        }
        // 16-bit and palette images are normalised to 8-bit RGB(A) by a copy.
        _ => Cost {
            size,
            bytes: frame * 2,
        },
    }
}

/// What an x265 encoder holds whatever the picture's size (fitted to the measurements at
/// `Format::Heic` in [`encode_cost`]).
const X265_FIXED_BYTES: u64 = 8 << 20;

/// The most bytes an encode of a `size` image holds, the image included.
pub fn encode_cost(format: Format, (width, height): (u32, u32), alpha: bool) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let frame = pixels * if alpha { 4 } else { 3 };
    let tile = u64::from(heif_grid::TILE);
    let grid = format == Format::Heic && !alpha && pixels > 2 * tile * tile;
    if grid {
        // The frame, one tile's x265 state, and that of each further tile encoded at once.
        let tiles = width.div_ceil(heif_grid::TILE) * height.div_ceil(heif_grid::TILE);
        let more = heif_grid::tile_workers(tiles) as u64 - 1;
        return frame * 15 / 10 + more * heif_grid::TILE_RUN_BYTES;
    }
    let tenths = match format {
        // libjpeg-turbo's YCbCr planes, then a frame of DCT coefficients (optimised tables).
        Format::Jpeg => 16,
        // libwebp's YUV picture and its method-6 state.
        Format::Webp => 15,
        // One picture: x265's state and its own fixed tables and thread pool. Measured peak
        // RSS above the same BMP encode of 512², 1024² and 1448² pictures: 15, 27, 43 MiB at
        // preset slow (what `auto` runs up to 1 MP), 11, 21, 36 at ultrafast.
        Format::Heic => return frame * 9 + X265_FIXED_BYTES,
        // libaom holds several frames of state.
        Format::Avif => 80,
        // The image and a file of up to its size.
        Format::Png | Format::Bmp | Format::Tiff => 21,
        // RGBA for the quantiser, its tables and the indexed frame.
        Format::Gif => 30,
    };
    frame * tenths / 10
}

pub fn decode(bytes: &[u8], header: &Header, request: DecodeRequest) -> Result<Decoded> {
    let decoded = match header.format {
        Format::Jpeg => jpeg::decode(bytes, header, request)?,
        Format::Heic | Format::Avif => heif::decode(bytes, request)?,
        _ => raster::decode(bytes, header.format)?,
    };
    if let Some(icc) = decoded.icc.as_ref().filter(|icc| icc.len() > MAX_ICC_BYTES) {
        return Err(Error::TooLarge(format!(
            "{}: a colour profile of {} bytes, the limit is {MAX_ICC_BYTES}",
            header.format.name(),
            icc.len()
        )));
    }
    Ok(Decoded {
        image: normalize(decoded.image),
        ..decoded
    })
}

/// Encodes `image`, which it consumes: a codec may free the frame as soon as it has its own
/// copy (JPEG's and WebP's YCbCr planes), keeping a large encode's peak memory near one frame.
pub fn encode(image: DynamicImage, request: &EncodeRequest<'_>) -> Result<Vec<u8>> {
    let image = if image.color().has_alpha() && !request.format.has_alpha() {
        flatten_on_white(&image)
    } else {
        image
    };
    match request.format {
        Format::Jpeg => jpeg::encode(image, request),
        Format::Webp => webp::encode(image, request),
        Format::Heic | Format::Avif => heif::encode(&image, request),
        Format::Png | Format::Gif | Format::Bmp | Format::Tiff => raster::encode(&image, request),
    }
}

/// Every operation works on 8-bit RGB or RGBA: other layouts are converted once here.
fn normalize(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    }
}

/// Transparency into a format without alpha is composited on white (docs/operations.md).
pub fn flatten_on_white(image: &DynamicImage) -> DynamicImage {
    let rgba = image.to_rgba8();
    let mut rgb = image::RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(src[3]);
        for c in 0..3 {
            let v = (u16::from(src[c]) * a + 255 * (255 - a) + 127) / 255;
            dst[c] = v as u8;
        }
    }
    DynamicImage::ImageRgb8(rgb)
}

/// Only errors with a message users can act on leave a codec; the library's own type stays here.
fn decode_error(format: Format, err: impl std::fmt::Display) -> Error {
    Error::Decode(format!("{}: {err}", format.name()))
}

fn encode_error(format: Format, err: impl std::fmt::Display) -> Error {
    Error::Encode(format!("{}: {err}", format.name()))
}
