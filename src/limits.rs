//! Limits that guard untrusted input; each is checked from the header before pixels exist.
//! And the process's own open-files limit, raised by `mount` and `warm`
//! ([`raise_open_files_limit`]).

use crate::error::{Error, Result};

/// `--max-source-bytes`' default as the command line shows it (OSS's 20 MB); the one place
/// this default is written.
pub const DEFAULT_MAX_SOURCE_BYTES: &str = "20MB";

/// Largest colour (ICC) profile a source may carry, in bytes; a larger one is EFBIG. Real
/// profiles are 0.5–600 KB (large printer profiles reach about 2 MB); a PNG stores its
/// profile deflated, so without a bound a 1 MB file could make the decoder inflate 1 GB
/// before any memory estimate.
pub const MAX_ICC_BYTES: usize = 4 << 20;

/// Largest EXIF block carried into an output or shown by `info`, in bytes; a larger one is
/// dropped (with a log line), the image converted without it. A JPEG's EXIF is at most
/// 64 KB (one APP1 segment); PNG, WebP, HEIF and TIFF may hold more, and parsing costs
/// about 100 bytes of memory per 12-byte field.
pub const MAX_EXIF_BYTES: usize = 1 << 20;

/// Defaults are OSS's (docs/operations.md, "Limits"); every field is a CLI option, whose
/// default is read from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest source file read, in bytes.
    pub max_source_bytes: u64,
    /// Largest source width or height.
    pub max_source_side: u32,
    /// Largest source width × height × frames.
    pub max_source_pixels: u64,
    /// Largest output width or height.
    pub max_output_side: u32,
    /// Largest output width × height.
    pub max_output_pixels: u64,
    /// Largest estimated peak memory of one conversion; None: half of the machine's
    /// memory ([`half_of_memory`]). The gate lets a conversion above `--convert-memory`
    /// run alone; this refuses one no machine of this size should attempt.
    pub max_conversion_bytes: Option<u64>,
}

/// `--max-conversion-memory`'s default: half of the machine's physical memory.
pub fn half_of_memory() -> u64 {
    static HALF: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        let info = rustix::system::sysinfo();
        info.totalram
            .saturating_mul(u64::from(info.mem_unit.max(1)))
            / 2
    });
    *HALF
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_source_bytes: crate::cli::parse_size(DEFAULT_MAX_SOURCE_BYTES)
                .expect("DEFAULT_MAX_SOURCE_BYTES is a size"),
            max_source_side: 30_000,
            max_source_pixels: 250_000_000,
            max_output_side: 16_384,
            max_output_pixels: 16_777_216,
            max_conversion_bytes: None,
        }
    }
}

impl Limits {
    pub fn check_source_bytes(&self, len: u64) -> Result<()> {
        if len > self.max_source_bytes {
            return Err(Error::TooLarge(format!(
                "source is {len} bytes, the limit is {} (--max-source-bytes)",
                self.max_source_bytes
            )));
        }
        Ok(())
    }

    pub fn check_source(&self, width: u32, height: u32, frames: u64) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(Error::Decode(format!("image is {width}x{height}")));
        }
        if width > self.max_source_side || height > self.max_source_side {
            return Err(Error::TooLarge(format!(
                "source is {width}x{height}, the limit is {} px per side (--max-source-side)",
                self.max_source_side
            )));
        }
        let pixels = u64::from(width) * u64::from(height) * frames.max(1);
        if pixels > self.max_source_pixels {
            return Err(Error::TooLarge(format!(
                "source is {width}x{height}x{} frames = {pixels} px, the limit is {} (--max-source-pixels)",
                frames.max(1),
                self.max_source_pixels
            )));
        }
        Ok(())
    }

    /// A conversion's estimated peak (`pipeline::memory`) within `--max-conversion-memory`.
    pub fn check_conversion_memory(&self, estimate: u64) -> Result<()> {
        let bound = self.max_conversion_bytes.unwrap_or_else(half_of_memory);
        if estimate > bound {
            return Err(Error::TooLarge(format!(
                "the conversion would hold an estimated {} at its peak, the limit is {} \
                 (--max-conversion-memory)",
                bytesize::ByteSize(estimate),
                bytesize::ByteSize(bound)
            )));
        }
        Ok(())
    }

    pub fn check_output(&self, width: u64, height: u64) -> Result<()> {
        self.check_size("output", width, height)
    }

    /// A watermark layer is held beside the image, so it gets the output's bounds.
    pub fn check_layer(&self, width: u64, height: u64) -> Result<()> {
        self.check_size("watermark layer", width, height)
    }

    fn check_size(&self, what: &str, width: u64, height: u64) -> Result<()> {
        if width > u64::from(self.max_output_side)
            || height > u64::from(self.max_output_side)
            || width.saturating_mul(height) > self.max_output_pixels
        {
            return Err(Error::TooLarge(format!(
                "{what} would be {width}x{height}, the limit is {} px per side and {} px \
                 (--max-output-side, --max-output-pixels)",
                self.max_output_side, self.max_output_pixels
            )));
        }
        Ok(())
    }
}

/// Raises the open-files soft limit to the hard limit (at most 2^20): the soft limit is
/// often 1024 while the hard limit allows far more. A mount holds a descriptor per open
/// file and per large cached variant (a memory file, see `cache::Stored`); `warm`'s walk
/// holds one per level of the directory it lists (fourth hostile review of 2026-12-03: with
/// a soft limit of 1024, every directory deeper than about 1,020 levels failed, EMFILE).
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit (None) is still capped by fs.nr_open (2^20 by default).
    let most = limit.maximum.map_or(1 << 20, |max| max.min(1 << 20));
    if limit.current.is_some_and(|current| current < most) {
        limit.current = Some(most);
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
