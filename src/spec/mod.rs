//! Parse an x-oss-process chain into a canonical, validated [`Spec`].
//!
//! Two spellings are accepted: the mount's `format,heic@resize,l_900` and OSS's
//! `image/format,heic/resize,l_900`. Equal meanings give equal [`Spec::canonical`] strings,
//! which is what the cache is keyed by.

mod args;
pub mod ops;
mod watermark;

use std::collections::BTreeMap;

pub use ops::{
    Axis, Crop, Flip, Gravity, ImageMark, IndexCrop, Op, Resize, ResizeMode, ResizeTarget,
    TextMark, Watermark, WatermarkContent,
};
pub use watermark::encode_text as encode_base64;

use crate::error::{Error, Result};
use ops::bare_int;

/// OSS accepts at most this many operations in one request; more is surely an attack.
pub const MAX_OPS: usize = 64;
/// OSS allows up to 3 image watermarks in one request.
pub const MAX_IMAGE_WATERMARKS: usize = 3;

/// An output format of `format,NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Bmp,
    Gif,
    Tiff,
    Heic,
    Avif,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Jpeg,
        Format::Png,
        Format::Webp,
        Format::Bmp,
        Format::Gif,
        Format::Tiff,
        Format::Heic,
        Format::Avif,
    ];

    /// The canonical name, also OSS's `Format` in `info`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Bmp => "bmp",
            Format::Gif => "gif",
            Format::Tiff => "tiff",
            Format::Heic => "heic",
            Format::Avif => "avif",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "jpeg" => Some(Format::Jpeg),
            _ => Format::ALL.into_iter().find(|f| f.name() == name),
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Bmp => "image/bmp",
            Format::Gif => "image/gif",
            Format::Tiff => "image/tiff",
            Format::Heic => "image/heic",
            Format::Avif => "image/avif",
        }
    }

    /// Whether the format stores an alpha channel (else transparency is flattened on white).
    pub fn has_alpha(self) -> bool {
        !matches!(self, Format::Jpeg | Format::Bmp)
    }

    /// Whether `quality` applies to the format.
    pub fn is_lossy(self) -> bool {
        matches!(
            self,
            Format::Jpeg | Format::Webp | Format::Heic | Format::Avif
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// `Q_n`: absolute.
    Absolute(u8),
    /// `q_n`: percent of the source JPEG's quality.
    Relative(u8),
}

/// What the request returns: an image, or a JSON description of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Image,
    /// `info`: JSON with FileSize, Format, FrameCount, ImageHeight, ImageWidth and EXIF.
    Info,
    /// `average-hue`: `{"RGB":"0xRRGGBB"}`.
    AverageHue,
}

/// A validated request: pixel operations in order plus the settings of the final encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub ops: Vec<Op>,
    pub format: Option<Format>,
    pub quality: Option<Quality>,
    /// `interlace,1`: progressive JPEG.
    pub interlace: bool,
    /// `auto-orient`: apply EXIF Orientation at decode (default on).
    pub auto_orient: bool,
    pub output: OutputKind,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            ops: Vec::new(),
            format: None,
            quality: None,
            interlace: false,
            auto_orient: true,
            output: OutputKind::Image,
        }
    }
}

/// Named chains for `style,NAME`, given at mount time.
#[derive(Debug, Clone, Default)]
pub struct Styles {
    chains: BTreeMap<String, String>,
}

impl Styles {
    /// Adds `NAME=CHAIN`; the chain is checked now so a bad style fails at start-up.
    pub fn add(&mut self, name: &str, chain: &str) -> Result<()> {
        let valid_name = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid_name {
            return Err(Error::spec(format!(
                "style name '{name}': must be 1-63 of [A-Za-z0-9_.-]"
            )));
        }
        Spec::parse(chain, &Styles::default())
            .map_err(|e| Error::spec(format!("style '{name}': {e}")))?;
        self.chains.insert(name.to_string(), chain.to_string());
        Ok(())
    }

    /// Reads `NAME=CHAIN` lines (blank lines and `#` comments skipped).
    pub fn add_file(&mut self, text: &str) -> Result<()> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, chain) = line
                .split_once('=')
                .ok_or_else(|| Error::spec(format!("styles line {}: not NAME=CHAIN", n + 1)))?;
            self.add(name.trim(), chain.trim())?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether `name` is one of these styles.
    pub fn contains(&self, name: &str) -> bool {
        self.chains.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }
}

impl Spec {
    /// Parses either spelling of a chain, expanding `style,NAME` from `styles`.
    pub fn parse(text: &str, styles: &Styles) -> Result<Spec> {
        let segments: Vec<&str> = match text.strip_prefix("image/") {
            Some(rest) => rest.split('/').collect(),
            None => text.split('@').collect(),
        };
        let mut builder = Builder::default();
        for segment in segments {
            builder.segment(segment, styles, true)?;
        }
        builder.finish()
    }

    /// The canonical text: defaults dropped, keys in a fixed order, encode settings last.
    pub fn canonical(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.auto_orient {
            parts.push("auto-orient,0".into());
        }
        parts.extend(self.ops.iter().map(Op::canonical));
        if let Some(f) = self.format {
            parts.push(format!("format,{}", f.name()));
        }
        match self.quality {
            Some(Quality::Absolute(q)) => parts.push(format!("quality,Q_{q}")),
            Some(Quality::Relative(q)) => parts.push(format!("quality,q_{q}")),
            None => {}
        }
        if self.interlace {
            parts.push("interlace,1".into());
        }
        match self.output {
            OutputKind::Image => {}
            OutputKind::Info => parts.push("info".into()),
            OutputKind::AverageHue => parts.push("average-hue".into()),
        }
        parts.join("@")
    }

    /// Whether pixels must be decoded at all (a bare `info` reads only the header).
    pub fn needs_pixels(&self) -> bool {
        self.output != OutputKind::Info
            || !self.ops.is_empty()
            || self.format.is_some()
            || self.quality.is_some()
            || self.interlace
    }

    /// The watermark images the spec stamps, as paths relative to the source root, each
    /// once, in the order they first appear: the files a conversion reads besides its source.
    pub fn mark_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = Vec::new();
        for op in &self.ops {
            if let Op::Watermark(w) = op {
                if let WatermarkContent::Image(m) = &w.content {
                    if !paths.contains(&m.path.as_str()) {
                        paths.push(&m.path);
                    }
                }
            }
        }
        paths
    }
}

#[derive(Default)]
struct Builder {
    spec: Spec,
    seen: Vec<&'static str>,
    count: usize,
}

impl Builder {
    fn once(&mut self, name: &'static str) -> Result<()> {
        if self.seen.contains(&name) {
            return Err(Error::spec(format!("{name}: given more than once")));
        }
        self.seen.push(name);
        Ok(())
    }

    fn segment(&mut self, segment: &str, styles: &Styles, allow_style: bool) -> Result<()> {
        if segment.is_empty() {
            return Err(Error::spec("empty operation (two separators in a row?)"));
        }
        self.count += 1;
        if self.count > MAX_OPS {
            return Err(Error::spec(format!(
                "more than {MAX_OPS} operations in one request"
            )));
        }
        let mut parts = segment.split(',');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        if let Some(op) = Op::parse(name, &args)? {
            if !op.is_identity() {
                self.spec.ops.push(op);
            }
            return Ok(());
        }
        match name {
            "format" => {
                self.once("format")?;
                let value =
                    args::single(name, &args, "jpg, png, webp, bmp, gif, tiff, heic, avif")?;
                let format = Format::from_name(value).ok_or_else(|| {
                    Error::spec(format!(
                        "format: '{value}' is not one of jpg, jpeg, png, webp, bmp, gif, tiff, heic, avif"
                    ))
                })?;
                self.spec.format = Some(format);
            }
            "quality" => {
                self.once("quality")?;
                let a = args::KeyedArgs::parse(name, &args, &["q", "Q"])?;
                let absolute = a.uint("Q", 1, 100)?;
                let relative = a.uint("q", 1, 100)?;
                // `Q` wins if both are given (docs/operations.md).
                self.spec.quality = match (absolute, relative) {
                    (Some(q), _) => Some(Quality::Absolute(q as u8)),
                    (None, Some(q)) => Some(Quality::Relative(q as u8)),
                    (None, None) => return Err(Error::spec("quality: needs q or Q")),
                };
            }
            "interlace" => {
                self.once("interlace")?;
                self.spec.interlace = bare_int(name, &args, 0, 1)? == 1;
            }
            "auto-orient" => {
                self.once("auto-orient")?;
                self.spec.auto_orient = bare_int(name, &args, 0, 1)? == 1;
            }
            "info" | "average-hue" => {
                self.once("info/average-hue")?;
                if !args.is_empty() {
                    return Err(Error::spec(format!("{name}: takes no arguments")));
                }
                self.spec.output = if name == "info" {
                    OutputKind::Info
                } else {
                    OutputKind::AverageHue
                };
            }
            "style" => {
                let style = args::single(name, &args, "a style name")?;
                if !allow_style {
                    return Err(Error::spec("style: a style cannot use another style"));
                }
                let chain = styles
                    .chains
                    .get(style)
                    .ok_or_else(|| Error::spec(format!("style: no style named '{style}'")))?;
                let inner: Vec<&str> = match chain.strip_prefix("image/") {
                    Some(rest) => rest.split('/').collect(),
                    None => chain.split('@').collect(),
                };
                for segment in inner {
                    self.segment(segment, styles, false)?;
                }
            }
            _ => {
                return Err(Error::spec(format!(
                    "unknown operation '{name}' (operations: resize, crop, indexcrop, circle, \
                     rounded-corners, rotate, flip, blur, bright, contrast, sharpen, watermark, \
                     format, quality, interlace, auto-orient, info, average-hue, style)"
                )))
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Spec> {
        let image_marks = self
            .spec
            .ops
            .iter()
            .filter(|op| {
                matches!(op, Op::Watermark(w) if matches!(w.content, WatermarkContent::Image(_)))
            })
            .count();
        if image_marks > MAX_IMAGE_WATERMARKS {
            return Err(Error::spec(format!(
                "watermark: at most {MAX_IMAGE_WATERMARKS} image watermarks in one request"
            )));
        }
        Ok(self.spec)
    }
}

#[cfg(test)]
mod tests;
