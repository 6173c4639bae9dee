//! How a mount behaves, besides what a conversion needs ([`crate::pipeline::Settings`]):
//! every default in one place, read by the command line's `--help` as well.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Errnos;

/// Room per job for a 16 MP frame (48 MiB) converted at 1.5 frames and its source.
pub const CONVERT_MEMORY_PER_JOB: u64 = 80 << 20;

/// `--cache-size`' default, as the command line shows it.
pub const DEFAULT_CACHE_SIZE: &str = "512MiB";
/// `--fuse-threads`' default.
pub const DEFAULT_FUSE_THREADS: u16 = 4;
/// `--attr-timeout`'s default.
pub const DEFAULT_ATTR_TTL: Duration = Duration::from_secs(1);
/// `--error-timeout`'s default.
pub const DEFAULT_ERROR_TTL: Duration = Duration::from_secs(10);
/// `--listing-memory`'s default, as the command line shows it: about two million entries.
pub const DEFAULT_LISTING_MEMORY: &str = "256MiB";
/// `--open-memory`'s default, as the command line shows it.
pub const DEFAULT_OPEN_MEMORY: &str = "1GiB";
/// `--disk-cache-size`' default, as the command line shows it.
pub const DEFAULT_DISK_CACHE_SIZE: &str = "4GiB";

/// `--disk-cache`'s default: `/var/cache/imgfs` for root, else `$XDG_CACHE_HOME/imgfs`,
/// else `~/.cache/imgfs` (the XDG base directory rule).
pub fn default_disk_cache_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/cache/imgfs");
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("imgfs")
}

/// Where and how large the disk cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheOptions {
    pub dir: PathBuf,
    /// Bound in bytes of the entries (each counted in whole 4 KiB blocks).
    pub bytes: u64,
}

impl Default for DiskCacheOptions {
    fn default() -> Self {
        DiskCacheOptions {
            dir: default_disk_cache_dir(),
            bytes: crate::cli::parse_size(DEFAULT_DISK_CACHE_SIZE)
                .expect("DEFAULT_DISK_CACHE_SIZE is a size"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MountOptions {
    /// The memory cache's budget in bytes, bookkeeping included.
    pub cache_bytes: u64,
    /// Conversions at once.
    pub jobs: usize,
    /// Budget of the conversions' memory estimates; None = jobs × [`CONVERT_MEMORY_PER_JOB`].
    pub convert_memory: Option<u64>,
    /// Threads reading kernel requests.
    pub fuse_threads: usize,
    /// How long the kernel may cache names and attributes.
    pub attr_ttl: Duration,
    /// How long a failed conversion is remembered.
    pub error_ttl: Duration,
    /// `-o` options: allow_other, allow_root, or anything mount.fuse takes.
    pub options: Vec<String>,
    /// FUSE passthrough for originals and large variants, where the kernel has it.
    pub passthrough: bool,
    /// Which errnos requests answer with (precise, or what web servers make a 4xx of).
    pub errors: Errnos,
    /// The disk tier under the memory cache; None = off.
    pub disk_cache: Option<DiskCacheOptions>,
    /// Bound of the memory all directory listings hold together.
    pub listing_bytes: u64,
    /// Bound of the bytes of variants open files hold (`--open-memory`).
    pub open_bytes: u64,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_bytes: crate::cli::parse_size(DEFAULT_CACHE_SIZE)
                .expect("DEFAULT_CACHE_SIZE is a size"),
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            convert_memory: None,
            fuse_threads: usize::from(DEFAULT_FUSE_THREADS),
            attr_ttl: DEFAULT_ATTR_TTL,
            error_ttl: DEFAULT_ERROR_TTL,
            options: Vec::new(),
            passthrough: true,
            errors: Errnos::Precise,
            disk_cache: Some(DiskCacheOptions::default()),
            listing_bytes: crate::cli::parse_size(DEFAULT_LISTING_MEMORY)
                .expect("DEFAULT_LISTING_MEMORY is a size"),
            open_bytes: crate::cli::parse_size(DEFAULT_OPEN_MEMORY)
                .expect("DEFAULT_OPEN_MEMORY is a size"),
        }
    }
}

impl MountOptions {
    pub fn convert_memory(&self) -> u64 {
        self.convert_memory
            .unwrap_or(self.jobs as u64 * CONVERT_MEMORY_PER_JOB)
    }
}
