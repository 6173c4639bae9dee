//! decode → operations → encode. Knows nothing of FUSE: `imgfs convert`, the mount and the
//! benchmark all call [`convert`].

mod adjust;
mod animation;
pub mod batch;
pub mod codec;
mod geometry;
mod info;
pub mod memory;
mod metadata;
pub mod resize;
pub mod target;
mod watermark;

use std::collections::HashMap;

use image::metadata::Orientation;
use image::{DynamicImage, GenericImageView};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::spec::{Format, Op, OutputKind, Quality, Spec, WatermarkContent};
use codec::{DecodeRequest, EncodeRequest, Header};
use memory::{MarkSource, Reservation};
pub use metadata::Metadata;

/// Default quality per lossy format when the request has no `quality` (docs/benchmarks.md, "Default qualities").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualities {
    pub jpeg: u8,
    pub webp: u8,
    pub heic: u8,
    pub avif: u8,
}

impl Default for Qualities {
    fn default() -> Self {
        // Chosen for about equal perceived quality (SSIMULACRA2 ≈ 80) on photos. HEIC and AVIF
        // are on heif-enc's scale (`codec::heif`): 44 and 79 are the encoder's 50 and 80.
        Qualities {
            jpeg: 85,
            webp: 88,
            heic: 44,
            avif: 79,
        }
    }
}

impl Qualities {
    pub fn of(&self, format: Format) -> u8 {
        match format {
            Format::Jpeg => self.jpeg,
            Format::Webp => self.webp,
            Format::Heic => self.heic,
            Format::Avif => self.avif,
            _ => 100,
        }
    }
}

/// Everything a conversion needs besides the source bytes and the spec.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub qualities: Qualities,
    /// Which outputs carry the source's EXIF (ICC profiles always go: they define the colours).
    pub metadata: Metadata,
    /// `--heic-preset`: an x265 preset, or `auto` ([`codec::x265_preset`]).
    pub heic_preset: String,
    /// `--target-quality`: SSIMULACRA2 score that encodes without a `quality` search for
    /// ([`target`]).
    pub target_quality: Option<u8>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            qualities: Qualities::default(),
            metadata: Metadata::default(),
            heic_preset: codec::DEFAULT_HEIC_PRESET.to_string(),
            target_quality: None,
        }
    }
}

impl Settings {
    /// Everything besides the spec that shapes an output's bytes, as text: the disk cache
    /// keeps it in every key, since its entries outlive a mount and its settings. The
    /// version covers changes of the codecs and operations between releases. Limits only
    /// decide whether a conversion runs, and failures are not kept on disk.
    pub fn fingerprint(&self) -> String {
        let q = &self.qualities;
        // Only a set target adds to the text, so keys made without one stay valid.
        let target = self.target_quality.map_or(String::new(), |t| {
            format!("; target ssimulacra2 {t} search {}", target::REVISION)
        });
        format!(
            "imgfs {} codecs {}; quality jpeg {} webp {} heic {} avif {}; x265 {}; metadata {}{target}",
            env!("CARGO_PKG_VERSION"),
            codec::REVISION,
            q.jpeg,
            q.webp,
            q.heic,
            q.avif,
            self.heic_preset,
            self.metadata.name()
        )
    }
}

/// A converted file: its bytes and what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub bytes: Vec<u8>,
    /// None for the JSON of `info` and `average-hue`.
    pub format: Option<Format>,
}

impl Output {
    pub fn mime(&self) -> &'static str {
        self.format.map_or("application/json", Format::mime)
    }
}

/// The bytes of the watermark images a spec names, by the path the spec gives them. The
/// pipeline reads no file itself: whoever calls it has found and judged these files.
#[derive(Debug, Default)]
pub struct Marks(HashMap<String, Vec<u8>>);

impl Marks {
    pub fn insert(&mut self, path: String, bytes: Vec<u8>) {
        self.0.insert(path, bytes);
    }

    pub(crate) fn get(&self, path: &str) -> Result<&[u8]> {
        self.0
            .get(path)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::NotFound(format!("watermark image {path}: not read")))
    }
}

/// What an operation needs to know besides the image.
pub(crate) struct OpContext<'a> {
    pub settings: &'a Settings,
    pub marks: &'a Marks,
    /// Whether the final format keeps transparency (else corners and canvases are white).
    pub output_alpha: bool,
}

/// Runs `spec` on the image in `source`, stamping the watermark images in `marks`.
pub fn convert(source: &[u8], marks: &Marks, spec: &Spec, settings: &Settings) -> Result<Output> {
    convert_into(source, marks, spec, settings, None, |output| output)
}

/// Like [`convert`], within `reserved` (admitted by the mount's [`MemoryGate`] for the
/// input files' bytes before they were read), which grows to the conversion's estimate
/// once the header is known; hands the output to `keep` while that memory is still
/// reserved: moving the output elsewhere (the cache's memory file) holds it twice for a
/// moment, which the conversion's estimate covers, since its frames are freed.
pub fn convert_into<T>(
    source: &[u8],
    marks: &Marks,
    spec: &Spec,
    settings: &Settings,
    reserved: Option<Reservation<'_>>,
    keep: impl FnOnce(Output) -> T,
) -> Result<T> {
    let (output, _reserved) = convert_reserved(source, marks, spec, settings, reserved)?;
    Ok(keep(output))
}

fn convert_reserved<'g>(
    source: &[u8],
    marks: &Marks,
    spec: &Spec,
    settings: &Settings,
    mut reserved: Option<Reservation<'g>>,
) -> Result<(Output, Option<Reservation<'g>>)> {
    let header = probe(source, &settings.limits)?;
    let mut grow = |bytes| {
        settings.limits.check_conversion_memory(bytes)?;
        if let Some(reserved) = &mut reserved {
            reserved.grow(bytes);
        }
        Ok::<_, Error>(())
    };
    if !spec.needs_pixels() {
        grow(memory::estimate_info(source.len()))?;
    }
    match plan(source, &header, marks, spec, settings)? {
        Plan::Described(output) => Ok((output, reserved)),
        Plan::Animated { format, estimate } => {
            grow(estimate)?;
            let output = convert_animation(source, marks, spec, settings, &header, format)?;
            Ok((output, reserved))
        }
        Plan::Still(plan) => {
            grow(plan.estimate)?;
            let mut decoded = decode_still(source, &header, &plan)?;
            let image = std::mem::replace(&mut decoded.image, DynamicImage::new_rgb8(0, 0));
            let output = finish(
                image, &decoded, source, &header, marks, spec, settings, &plan,
            )?;
            Ok((output, reserved))
        }
    }
}

/// The source's header, once its bytes and its size are within the limits.
fn probe(source: &[u8], limits: &Limits) -> Result<Header> {
    limits.check_source_bytes(source.len() as u64)?;
    let header = codec::probe(source)?;
    check_header(&header, limits)?;
    Ok(header)
}

/// The source's size as shown and as the decoder builds it (a HEIF's `ispe` before its
/// crop) within the limits.
fn check_header(header: &Header, limits: &Limits) -> Result<()> {
    limits.check_source(header.width, header.height, header.frames)?;
    let (coded_width, coded_height) = header.coded_size();
    limits.check_source(coded_width, coded_height, header.frames)
}

/// How a conversion will run, known from the header before any pixel exists.
enum Plan {
    /// `info` of the source itself: nothing to decode.
    Described(Output),
    Animated {
        format: Format,
        estimate: u64,
    },
    Still(StillPlan),
}

struct StillPlan {
    format: Format,
    orientation: Orientation,
    request: DecodeRequest,
    /// The decoded image's (width, height): still conversions of one source that agree on
    /// it and on `auto-orient` start from the same pixels, so they may share one decode.
    decoded_size: (u32, u32),
    target: Option<f64>,
    /// The conversion's memory estimate (`memory::estimate`).
    estimate: u64,
}

fn plan(
    source: &[u8],
    header: &Header,
    marks: &Marks,
    spec: &Spec,
    settings: &Settings,
) -> Result<Plan> {
    let limits = &settings.limits;
    if !spec.needs_pixels() {
        let described = info::describe(source, header, source.len(), settings)?;
        return Ok(Plan::Described(described));
    }
    let format = spec.format.unwrap_or(header.format);
    let animated = header.frames > 1
        && animation::can_animate(header.format)
        && animation::can_animate(format)
        && spec.output != OutputKind::AverageHue
        && spec.ops.iter().all(animation::is_framewise);
    if animated {
        let estimate = memory::estimate_animation(source.len(), header);
        return Ok(Plan::Animated { format, estimate });
    }
    let orientation = if spec.auto_orient {
        header.orientation
    } else {
        Orientation::NoTransforms
    };
    let request = DecodeRequest {
        min_size: shrink_target(header, orientation, spec),
        auto_orient: spec.auto_orient,
    };
    let decode = codec::decode_cost(source, header, &request);
    let target = target::target_for(spec, format, settings);
    let estimate = memory::estimate(
        source.len(),
        header.format,
        decode,
        oriented_size(header, orientation, false),
        spec,
        format,
        &mark_sources(spec, marks, limits)?,
        limits,
        // A search holds more than one encode (`target::search_cost`).
        if target.is_some() {
            target::search_cost
        } else {
            codec::encode_cost
        },
    )?;
    Ok(Plan::Still(StillPlan {
        format,
        orientation,
        request,
        decoded_size: decode.size,
        target,
        estimate,
    }))
}

/// A still source decoded, upright as the plan asks, with what the encode carries over.
struct Decoded {
    image: DynamicImage,
    icc: Option<Vec<u8>>,
    exif: Option<Vec<u8>>,
    /// The source's size as the operations see it (after orientation, at full scale).
    logical: (u32, u32),
}

fn decode_still(source: &[u8], header: &Header, plan: &StillPlan) -> Result<Decoded> {
    let decoded = codec::decode(source, header, plan.request)?;
    let mut image = decoded.image;
    // HEIF decoders orient by themselves; for the rest, EXIF says how.
    if !decoded.oriented && plan.orientation != Orientation::NoTransforms {
        image.apply_orientation(plan.orientation);
    }
    Ok(Decoded {
        image,
        icc: decoded.icc,
        exif: decoded.exif,
        logical: oriented_size(header, plan.orientation, decoded.oriented),
    })
}

/// The operations on `image` (the decoded source's pixels), then the encode.
#[allow(clippy::too_many_arguments)]
fn finish(
    mut image: DynamicImage,
    decoded: &Decoded,
    source: &[u8],
    header: &Header,
    marks: &Marks,
    spec: &Spec,
    settings: &Settings,
    plan: &StillPlan,
) -> Result<Output> {
    let format = plan.format;
    let ctx = OpContext {
        settings,
        marks,
        output_alpha: format.has_alpha(),
    };
    let mut logical = decoded.logical;
    for op in &spec.ops {
        image = apply(image, op, logical, &ctx)?;
        logical = (image.width(), image.height());
    }
    settings
        .limits
        .check_output(u64::from(image.width()), u64::from(image.height()))?;

    if spec.output == OutputKind::AverageHue {
        return Ok(info::average_hue(&image));
    }
    let (width, height) = image.dimensions();
    let shape = metadata::Target {
        source: decoded.logical,
        size: (width, height),
        upright: spec.auto_orient,
    };
    let exif = (decoded.exif.as_deref())
        .and_then(|exif| metadata::carried(exif, settings.metadata, &shape));
    let quality = encode_quality(source, spec, header, format, settings);
    let request = EncodeRequest {
        format,
        quality,
        progressive: spec.interlace,
        heic_preset: &settings.heic_preset,
        icc: decoded.icc.as_deref(),
        exif: exif.as_deref(),
    };
    let bytes = match plan.target {
        Some(score) => target::encode(image, &request, score)?.bytes,
        None => codec::encode(image, &request)?,
    };
    let output = Output {
        bytes,
        format: Some(format),
    };
    if spec.output == OutputKind::Info {
        let header = Header {
            format,
            width,
            height,
            frames: 1,
            orientation: Orientation::NoTransforms,
            coded: None,
            deep: false,
        };
        return info::describe_with_exif(&output.bytes, &header, exif.as_deref());
    }
    Ok(output)
}

/// The quality of the final encode: `Q_n`, `q_n` of the source JPEG's quality, or the
/// format's default.
fn encode_quality(
    source: &[u8],
    spec: &Spec,
    header: &Header,
    format: Format,
    settings: &Settings,
) -> u8 {
    match spec.quality {
        Some(Quality::Absolute(q)) => q,
        Some(Quality::Relative(percent)) => match codec::estimate_jpeg_quality(source) {
            Some(source_q) if header.format == Format::Jpeg => {
                ((u32::from(source_q) * u32::from(percent) + 50) / 100).clamp(1, 100) as u8
            }
            // For non-JPEG sources `q` acts as `Q` (docs/operations.md).
            _ => percent,
        },
        None => settings.qualities.of(format),
    }
}

/// Every frame through the chain, then an animated GIF or WebP.
fn convert_animation(
    source: &[u8],
    marks: &Marks,
    spec: &Spec,
    settings: &Settings,
    header: &Header,
    format: Format,
) -> Result<Output> {
    let ctx = OpContext {
        settings,
        marks,
        output_alpha: true,
    };
    let frames = animation::decode(source, header.format)?;
    let frames = animation::map_frames(frames, |mut image| {
        for op in &spec.ops {
            let logical = (image.width(), image.height());
            image = apply(image, op, logical, &ctx)?;
        }
        settings
            .limits
            .check_output(u64::from(image.width()), u64::from(image.height()))?;
        Ok(image)
    })?;
    let quality = encode_quality(source, spec, header, format, settings);
    let bytes = animation::encode(&frames, format, quality)?;
    if spec.output == OutputKind::Info {
        let (width, height) = frames.frames[0].0.dimensions();
        let described = Header {
            format,
            width,
            height,
            frames: frames.frames.len() as u64,
            orientation: Orientation::NoTransforms,
            coded: None,
            deep: false,
        };
        return info::describe_with_exif(&bytes, &described, None);
    }
    Ok(Output {
        bytes,
        format: Some(format),
    })
}

/// The source's size as a person sees it: after EXIF orientation.
fn oriented_size(header: &Header, orientation: Orientation, decoder_oriented: bool) -> (u32, u32) {
    if !decoder_oriented && swaps_axes(orientation) {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    }
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Shrink-on-load: when the chain starts with a downscaling resize, the JPEG decoder may
/// decode at 1/2, 1/4 or 1/8 scale as long as the result stays at least as large as what
/// the resize produces; the resize then computes its output from the source's real size.
fn shrink_target(header: &Header, orientation: Orientation, spec: &Spec) -> Option<(u32, u32)> {
    let Some(Op::Resize(r)) = spec.ops.first() else {
        return None;
    };
    let (w, h) = oriented_size(header, orientation, false);
    let plan = resize::plan(w, h, r)?;
    let (sw, sh) = plan.scaled;
    Some(if swaps_axes(orientation) {
        (sh, sw)
    } else {
        (sw, sh)
    })
}

fn apply(
    image: DynamicImage,
    op: &Op,
    logical: (u32, u32),
    ctx: &OpContext<'_>,
) -> Result<DynamicImage> {
    match op {
        Op::Resize(r) => {
            // Planned in the source's logical size, so shrink-on-load changes nothing visible.
            let Some(plan) = resize::plan(logical.0, logical.1, r) else {
                return Ok(image);
            };
            resize::check(&plan, &ctx.settings.limits)?;
            resize::apply(image, &plan, r.color)
        }
        Op::Crop(_)
        | Op::IndexCrop(_)
        | Op::Circle { .. }
        | Op::RoundedCorners { .. }
        | Op::Rotate(_)
        | Op::Flip(_) => geometry::apply(image, op, ctx),
        Op::Blur { .. } | Op::Bright(_) | Op::Contrast(_) | Op::Sharpen(_) => {
            adjust::apply(image, op)
        }
        Op::Watermark(mark) => watermark::apply(image, mark, ctx),
    }
}

/// The spec's image marks as the memory estimate needs them (from their headers), checked
/// against the source limits before anything is decoded.
fn mark_sources(spec: &Spec, marks: &Marks, limits: &Limits) -> Result<Vec<MarkSource>> {
    let image_marks = spec.ops.iter().filter_map(|op| match op {
        Op::Watermark(mark) => match &mark.content {
            WatermarkContent::Image(m) => Some(m),
            WatermarkContent::Text(_) => None,
        },
        _ => None,
    });
    image_marks
        .map(|m| {
            let bytes = marks.get(&m.path)?;
            let header = codec::probe(bytes)?;
            limits.check_source(header.width, header.height, header.frames)?;
            Ok(MarkSource {
                header,
                len: bytes.len(),
                decode: codec::decode_cost(bytes, &header, &DecodeRequest::default()),
            })
        })
        .collect()
}
