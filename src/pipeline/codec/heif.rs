//! HEIC (HEVC via x265/libde265) and AVIF (AV1 via libaom/dav1d) through libheif.

use std::sync::LazyLock;

use image::metadata::Orientation;
use image::DynamicImage;
use libheif_rs::{
    color_profile_types, Channel, ColorProfileRaw, ColorSpace, CompressionFormat, DecodingOptions,
    EncoderParameterValue, EncoderQuality, HeifContext, Image, LibHeif, RgbChroma,
};

use super::{
    decode_error, encode_error, heif_bounds, DecodeRequest, Decoded, EncodeRequest, Header,
};
use crate::error::Result;
use crate::spec::Format;

/// One library instance for the process: libheif's init/deinit is global and not free.
static LIBHEIF: LazyLock<LibHeif> = LazyLock::new(|| {
    let libheif = LibHeif::new();
    super::heif_replay::register();
    libheif
});

/// `--heic-preset auto`: the x265 preset follows the picture's size ([`x265_preset`]).
pub const AUTO_PRESET: &str = "auto";
/// Every value of `--heic-preset`: [`AUTO_PRESET`], then the x265 presets.
pub const HEIC_PRESETS: [&str; 11] = [
    AUTO_PRESET,
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
pub const DEFAULT_HEIC_PRESET: &str = AUTO_PRESET;
/// Under [`AUTO_PRESET`], pictures of more pixels than [`SMALL_PICTURE_PIXELS`]: chosen by
/// measurement (docs/benchmarks.md, "x265 presets"): on 9–20 MP photos at q50, 0.4–0.5×
/// superfast's time at -1% to +7% bytes and SSIMULACRA2 within 1%; at equal score as small as
/// superfast.
pub const LARGE_PICTURE_PRESET: &str = "ultrafast";
/// Under [`AUTO_PRESET`], pictures of at most [`SMALL_PICTURE_PIXELS`] (thumbnails and web
/// sizes), where the encode is a small share of a conversion's time beside the decode of a
/// larger source. Measured (docs/benchmarks.md, "x265 presets"): on 900 px outputs of the
/// benchmark photos, bytes at equal score against `vipsthumbnail` (heif-enc's x265 at slow)
/// 1.00× / 0.99× (SSIMULACRA2 / DSSIM) instead of ultrafast's 1.14× / 1.11×; veryfast and
/// medium cost the same time for one intra picture at 1% more bytes.
pub const SMALL_PICTURE_PRESET: &str = "slow";
/// One 1024×1024 grid tile's area: above it, slow would cost 0.3 s or more per picture on
/// 2 cores (2.7× ultrafast's encode), where a whole photo's encode is most of the time.
pub const SMALL_PICTURE_PIXELS: u64 = 1 << 20;

/// The x265 preset a picture of `size` gets under the `--heic-preset` value `setting`.
pub fn x265_preset(setting: &str, (width, height): (u32, u32)) -> &str {
    if setting != AUTO_PRESET {
        return setting;
    }
    if u64::from(width) * u64::from(height) <= SMALL_PICTURE_PIXELS {
        SMALL_PICTURE_PRESET
    } else {
        LARGE_PICTURE_PRESET
    }
}

/// x265 options set on top of the preset for every HEIC encode, chosen by measurement
/// (docs/benchmarks.md, "Encoder tuning"): on 1024 px tiles of the benchmark photos they take
/// ultrafast from 1.17× to 1.09× the bytes of heif-enc's preset slow at equal SSIMULACRA2 and
/// DSSIM, at 0.33× (not 0.17×) its CPU time. RDOQ and sign hiding spend encoder time on fewer
/// bits; psycho-visual RD adds texture energy that both metrics count as error. The chroma QP
/// offsets of −2 quantise Cb and Cr two steps finer than x265 derives from the luma QP: with
/// RD level 1, 1.05× → 1.02× / 1.02× heif-enc's bytes at equal SSIMULACRA2 / DSSIM, and at
/// preset slow 1.00× / 1.01× → 0.96× / 0.98×, at the same CPU time (colour bleeding in smooth
/// skies and gradients costs both metrics more than the extra chroma bits).
pub const X265_TUNING: [(&str, &str); 6] = [
    ("x265:rdoq-level", "2"),
    ("x265:signhide", "1"),
    ("x265:psy-rd", "0"),
    ("x265:psy-rdoq", "0"),
    ("x265:cbqpoffs", "-2"),
    ("x265:crqpoffs", "-2"),
];
/// Set on top of [`X265_TUNING`] at preset ultrafast alone: RD level 1 instead of ultrafast's
/// 2 (level 2 adds RD-optimised split decisions). Measured (docs/benchmarks.md, "Encoder
/// tuning"): on the full 9–20 MP photos at Q50 and Q60, 3–11% less wall time (8–9% on the 20 MP
/// one) at bytes within ±0.5% and SSIMULACRA2 within ±0.05; on 1024 px crops 1.089× / 1.099×
/// heif-enc's bytes at equal SSIMULACRA2 / DSSIM against 1.088× / 1.098× at level 2, in 16%
/// less CPU. Slower presets keep their own, higher levels.
pub const ULTRAFAST_TUNING: [(&str, &str); 1] = [("x265:rd", "1")];

/// Every parameter an x265 encode gets, in order: the preset, [`X265_TUNING`], and at
/// ultrafast [`ULTRAFAST_TUNING`].
pub(super) fn x265_parameters(preset: &str) -> impl Iterator<Item = (&str, &str)> {
    let ultrafast = if preset == "ultrafast" {
        &ULTRAFAST_TUNING[..]
    } else {
        &[]
    };
    std::iter::once(("preset", preset))
        .chain(X265_TUNING)
        .chain(ultrafast.iter().copied())
}

/// libaom speed for AVIF (0 slowest .. 9 fastest).
pub const AOM_SPEED: i32 = 7;
/// libaom options set for every AVIF encode on top of [`AOM_SPEED`] (libheif passes `aom:NAME`
/// to `aom_codec_set_option`), chosen by measurement (docs/benchmarks.md, "Encoder tuning"):
/// on 1024×768 crops of the benchmark photos, quantisation matrices take speed 7 from 1.14× to
/// 1.12× the bytes of `heif-enc -A` (speed 6) at equal SSIMULACRA2 and DSSIM at its q50, and
/// from 1.05× to 1.00–1.01× at its q60 (about avifenc's default point), at speed 7's CPU time
/// (within the noise). The matrices quantise high frequencies more coarsely than low ones.
/// Every other all-intra option swept (chroma delta-q, delta-q modes, sharpness, aq-mode,
/// restoration, tune psnr) gave no fewer bytes at speed 7.
pub const AOM_TUNING: [(&str, &str); 1] = [("aom:enable-qm", "1")];

/// `quality,Q_N` / `q_N` for HEIC → the lossy quality libheif's x265 plugin gets (x265 CRF =
/// (100 − quality) / 2), as anchors (N, encoder quality), linear in between (rounded).
///
/// Measured so that imgfs's output at N scores as `heif-enc -q N` does (Debian's libheif 1.15,
/// x265 preset slow: libheif's own scale, which OSS users compare with): mean SSIMULACRA2
/// against the decoded source over the three benchmark photos at full size; imgfs without the
/// mapping swept over encoder qualities 1, 5, 10, … 100, and heif-enc's mean score at each N met
/// by linear interpolation (`scripts/quality-map.py heic`; README, "What `Q_N` means for HEIC
/// and AVIF"). N 1–70 are those measured points (N 50 needs encoder 57). Above 70 heif-enc's
/// score is flat (88.8 at 70, 89.4 at 90 and 100: x265's psy-rd spends the bits on texture that
/// SSIMULACRA2 counts as error, which [`X265_TUNING`] turns off) and imgfs reaches it at encoder
/// 72–73, so matching it would give N 80–100 one output; the line runs on to (100, 100)
/// instead, scoring 1.1–1.6 above heif-enc there at 0.8–1.1× its bytes. Measured at preset
/// ultrafast (what `auto` runs above 1 MP) with [`X265_TUNING`], and applied at the presets in
/// [`MAPPED_PRESETS`].
const HEIC_QUALITY: [(u8, u8); 9] = [
    (1, 5),
    (10, 14),
    (20, 27),
    (30, 37),
    (40, 45),
    (50, 57),
    (60, 66),
    (70, 71),
    (100, 100),
];
/// The x265 presets whose HEIC encodes go through [`HEIC_QUALITY`]: at N 30, 50, 70 superfast
/// scores as ultrafast does (both below heif-enc), while veryfast and slow (with
/// [`X265_TUNING`]) score as heif-enc already (65.6, 84.3, 90.1 at slow against 66.0, 84.1,
/// 88.8), so the slower presets take N as it is.
const MAPPED_PRESETS: [&str; 2] = ["ultrafast", "superfast"];

/// The same for AVIF against `heif-enc -A -q N` (libheif 1.15, libaom 3.6 at libheif's speed 6;
/// imgfs runs [`AOM_SPEED`]), imgfs swept at encoder qualities 1, 10, 20, … 100
/// (`scripts/quality-map.py avif`): imgfs scored 2–8 lower at N 10–50 and within 1.6 from 60
/// up. N 1–90 are the measured points; (100, 100) keeps Q_100 imgfs's best (heif-enc's Q100
/// is met at encoder 96; at 100 imgfs scores 1.6 higher at the same bytes). Measured before
/// [`AOM_TUNING`]; with it the mean score moved by +0.1, 0.0, −0.9, −0.9 at N 30, 50, 70, 79
/// (the default still scores 80.0), within the calibration's tolerance, so the anchors stay.
const AVIF_QUALITY: [(u8, u8); 11] = [
    (1, 2),
    (10, 13),
    (20, 26),
    (30, 36),
    (40, 44),
    (50, 53),
    (60, 63),
    (70, 71),
    (80, 81),
    (90, 89),
    (100, 100),
];

/// The lossy quality libheif gets for `request.quality` (1..=100, the user's scale of `Q_N`,
/// `q_N` and the defaults): every HEIC and AVIF encode, grid tiles and the trials of
/// `--target-quality` included, goes through here.
pub(super) fn encoder_quality(request: &EncodeRequest<'_>) -> u8 {
    let anchors: &[(u8, u8)] = match request.format {
        Format::Avif => &AVIF_QUALITY,
        _ if MAPPED_PRESETS.contains(&request.heic_preset) => &HEIC_QUALITY,
        _ => return request.quality.clamp(1, 100),
    };
    interpolate(anchors, request.quality)
}

/// Piecewise-linear through `anchors` (ascending N, from 1 to 100), rounded to the nearest
/// integer and kept within 1..=100.
fn interpolate(anchors: &[(u8, u8)], n: u8) -> u8 {
    let n = n.clamp(1, 100);
    let i = anchors
        .partition_point(|&(x, _)| x < n)
        .min(anchors.len() - 1);
    let (x1, y1) = anchors[i];
    if i == 0 || x1 <= n {
        return y1.clamp(1, 100);
    }
    let (x0, y0) = anchors[i - 1];
    let (n, x0, x1) = (u32::from(n), u32::from(x0), u32::from(x1));
    let (y0, y1) = (u32::from(y0), u32::from(y1));
    let span = x1 - x0;
    let y = (y0 * (x1 - n) + y1 * (n - x0) + span / 2) / span;
    y.clamp(1, 100) as u8
}

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
    heif_bounds::check_tiling(bytes, format)?;
    let ctx = context(bytes, format)?;
    let handle = ctx
        .primary_image_handle()
        .map_err(|e| decode_error(format, e))?;
    let (width, height) = (handle.width(), handle.height());
    let ispe = (handle.ispe_width(), handle.ispe_height());
    let ispe = (ispe.0.max(0) as u32, ispe.1.max(0) as u32);
    // A rotation swaps the sides; only a crop makes the coded picture larger.
    let larger = u64::from(ispe.0) * u64::from(ispe.1) > u64::from(width) * u64::from(height);
    Ok(Header {
        format,
        width,
        height,
        frames: 1,
        orientation: Orientation::NoTransforms,
        coded: larger.then_some(ispe),
        deep: handle.luma_bits_per_pixel() > 8 || handle.chroma_bits_per_pixel() > 8,
    })
}

pub(super) fn decode(bytes: &[u8], request: DecodeRequest) -> Result<Decoded> {
    let format = super::detect(bytes).unwrap_or(Format::Heic);
    // The probe, which every decode follows, checked the tiling; `bound` holds libheif to
    // it here without parsing the file a second time.
    let mut ctx = context(bytes, format)?;
    let handle = ctx
        .primary_image_handle()
        .map_err(|e| decode_error(format, e))?;
    heif_bounds::bound(&mut ctx, &handle, format)?;
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
    // The whole picture's size chooses, not a grid tile's.
    let request = &EncodeRequest {
        heic_preset: x265_preset(request.heic_preset, (image.width(), image.height())),
        ..*request
    };
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
    let quality = encoder_quality(request);
    encoder
        .set_quality(EncoderQuality::Lossy(quality))
        .map_err(fail)?;
    match compression {
        CompressionFormat::Hevc => {
            for (name, value) in x265_parameters(request.heic_preset) {
                encoder
                    .set_parameter_value(name, EncoderParameterValue::String(value.into()))
                    .map_err(fail)?;
            }
        }
        _ => {
            encoder
                .set_parameter_value("speed", EncoderParameterValue::Int(AOM_SPEED))
                .map_err(fail)?;
            for (name, value) in AOM_TUNING {
                encoder
                    .set_parameter_value(name, EncoderParameterValue::String(value.into()))
                    .map_err(fail)?;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A request for N in `format` at `preset`, with no metadata.
    fn request(format: Format, preset: &str, n: u8) -> EncodeRequest<'_> {
        EncodeRequest {
            format,
            quality: n,
            progressive: false,
            heic_preset: preset,
            icc: None,
            exif: None,
        }
    }

    /// The encoder quality of a request for N in `format` at `preset`.
    fn mapped(format: Format, preset: &str, n: u8) -> u8 {
        encoder_quality(&request(format, preset, n))
    }

    #[test]
    fn the_quality_maps_are_monotone_and_cover_1_to_100() {
        let maps: [(Format, &[(u8, u8)]); 2] =
            [(Format::Heic, &HEIC_QUALITY), (Format::Avif, &AVIF_QUALITY)];
        for (format, anchors) in maps {
            assert_eq!(anchors.first().map(|a| a.0), Some(1));
            assert_eq!(anchors.last(), Some(&(100, 100)));
            assert!(anchors
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
            let q = |n| mapped(format, LARGE_PICTURE_PRESET, n);
            let all: Vec<u8> = (1..=100).map(q).collect();
            assert!(all.windows(2).all(|w| w[0] <= w[1]), "{format:?}: {all:?}");
            assert!(all.iter().all(|q| (1..=100).contains(q)));
            // The anchors themselves are hit exactly.
            for &(n, encoder) in anchors {
                assert_eq!(q(n), encoder, "{format:?} {n}");
            }
            // Out of range clamps.
            assert_eq!(q(0), q(1));
            assert_eq!(q(255), 100);
        }
    }

    #[test]
    fn rd_level_1_goes_to_ultrafast_alone_and_each_parameter_reaches_x265() {
        let at = |preset| x265_parameters(preset).collect::<Vec<_>>();
        assert_eq!(at("ultrafast")[0], ("preset", "ultrafast"));
        assert!(at("ultrafast").contains(&("x265:rd", "1")));
        for preset in ["superfast", "slow"] {
            assert!(
                at(preset).iter().all(|(name, _)| *name != "x265:rd"),
                "{preset}"
            );
            assert_eq!(at(preset).len(), 1 + X265_TUNING.len());
        }
        // x265 takes each option: libheif fails an encode whose option x265 refuses.
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(96, 64, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x * y) % 251) as u8])
        }));
        for preset in ["ultrafast", "superfast"] {
            let bytes = encode(&image, &request(Format::Heic, preset, 50)).unwrap();
            assert_eq!(&bytes[4..12], b"ftypheic", "{preset}");
        }
    }

    #[test]
    fn auto_runs_slow_up_to_one_megapixel_and_ultrafast_above() {
        assert_eq!(x265_preset(AUTO_PRESET, (1024, 1024)), SMALL_PICTURE_PRESET);
        assert_eq!(x265_preset(AUTO_PRESET, (900, 506)), "slow");
        assert_eq!(x265_preset(AUTO_PRESET, (1025, 1024)), LARGE_PICTURE_PRESET);
        assert_eq!(x265_preset(AUTO_PRESET, (5000, 300)), "ultrafast");
        for preset in &HEIC_PRESETS[1..] {
            assert_eq!(x265_preset(preset, (16, 16)), *preset);
            assert_eq!(x265_preset(preset, (8000, 6000)), *preset);
        }
        // The encoder resolves `auto` by the picture: the file is the named preset's.
        let encoded = |(w, h), heic_preset| {
            let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x / 3) as u8, (y / 2) as u8, ((x ^ y) % 251) as u8])
            }));
            encode(&image, &request(Format::Heic, heic_preset, 50)).unwrap()
        };
        for (size, preset) in [((320, 200), "slow"), ((1100, 1000), "ultrafast")] {
            let auto = encoded(size, AUTO_PRESET);
            assert_eq!(auto, encoded(size, preset), "{size:?}");
            let other = if preset == "slow" {
                "ultrafast"
            } else {
                "slow"
            };
            assert_ne!(auto, encoded(size, other), "{size:?}");
        }
    }

    #[test]
    fn heif_enc_quality_50_is_met_at_the_measured_encoder_qualities() {
        // heif-enc -q 50 (mean SSIMULACRA2 84.1) ≈ imgfs's encoder 57; -A -q 50 (64.8) ≈ 53.
        assert_eq!(mapped(Format::Heic, "ultrafast", 50), 57);
        assert_eq!(mapped(Format::Heic, "superfast", 50), 57);
        assert_eq!(mapped(Format::Avif, "ultrafast", 50), 53);
        // Slower presets already score as heif-enc: N as it is.
        assert_eq!(mapped(Format::Heic, "veryfast", 50), 50);
        assert_eq!(mapped(Format::Heic, "slow", 50), 50);
        assert_eq!(mapped(Format::Heic, "placebo", 1), 1);
        assert_eq!(mapped(Format::Heic, "slow", 0), 1);
        // The defaults keep the encoder qualities they had before the mapping.
        let defaults = crate::pipeline::Qualities::default();
        assert_eq!(
            mapped(Format::Heic, LARGE_PICTURE_PRESET, defaults.heic),
            50
        );
        assert_eq!(
            mapped(Format::Avif, LARGE_PICTURE_PRESET, defaults.avif),
            80
        );
    }

    #[test]
    fn interpolation_is_linear_and_rounded_between_anchors() {
        let anchors = [(1, 1), (11, 21), (100, 100)];
        assert_eq!(interpolate(&anchors, 6), 11);
        assert_eq!(interpolate(&anchors, 2), 3);
        assert_eq!(interpolate(&anchors, 55), 60);
        assert_eq!(interpolate(&anchors, 100), 100);
    }
}
