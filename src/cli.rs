//! The command line, defined once: `main` parses it, the man page is generated from it.

use std::path::PathBuf;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

use crate::error::Errnos;
use crate::limits::{Limits, DEFAULT_MAX_SOURCE_BYTES};
use crate::options::{
    DiskCacheOptions, DEFAULT_ATTR_TTL, DEFAULT_CACHE_SIZE, DEFAULT_DISK_CACHE_SIZE,
    DEFAULT_ERROR_TTL, DEFAULT_FUSE_THREADS, DEFAULT_LISTING_MEMORY, DEFAULT_OPEN_MEMORY,
};
use crate::pipeline::{Metadata, Qualities, Settings};
use crate::spec::Styles;

#[derive(Debug, Parser)]
#[command(
    name = "imgfs",
    version,
    about = "Serve Alibaba Cloud OSS x-oss-process image variants of a directory as files",
    long_about = "imgfs mounts a directory read-only and adds, beside every image NAME, the \
variants NAME@OP@OP... where each OP is one x-oss-process operation: \
photo.jpg@format,heic@resize,l_900,h_600 is photo.jpg as HEIF, fitted into 900x600. \
A variant is converted on first access, has its exact size in stat, and is then served \
from an in-memory cache.",
    after_help = "Examples:\n  imgfs mount ~/Photos /mnt/img\n  cat /mnt/img/photo.jpg@format,webp@resize,w_900 > small.webp\n  imgfs convert photo.jpg 'image/format,heic/resize,l_900' -o photo.heic"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount SOURCE read-only at MOUNTPOINT, in the foreground (or with --daemon in the
    /// background), until Ctrl-C, SIGTERM or umount.
    Mount(MountArgs),
    /// Convert one file with a spec, without a mount.
    Convert(ConvertArgs),
    /// Fill the disk cache ahead of time: convert every image under SOURCE (recognised by
    /// content, recursively; symlinks are not followed) with each SPEC, skipping what is
    /// cached already. A later mount of SOURCE with the same processing options serves
    /// them without converting. Ctrl-C stops, keeping what is done; a second Ctrl-C exits at
    /// once (status 130).
    Warm(WarmArgs),
    /// Print a mount's metrics readably (MOUNTPOINT/.imgfs/metrics is the Prometheus text).
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Where imgfs is mounted.
    pub mountpoint: PathBuf,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// The directory to serve.
    pub source: PathBuf,
    /// Where to mount it (an existing, empty directory).
    pub mountpoint: PathBuf,
    /// Memory for converted variants (an LRU bounded in bytes; those of 256 KiB or more are
    /// memory files, one open descriptor each), e.g. 512MiB or 2GB.
    #[arg(long, default_value = DEFAULT_CACHE_SIZE, value_parser = parse_size)]
    pub cache_size: u64,
    /// Conversions run at once (each also uses the encoder's own threads); default: cores.
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Memory for conversions in flight: each waits until its estimate (from the image's
    /// header) fits beside the running ones; one larger than this runs alone.
    /// Default: jobs × 80MiB.
    #[arg(long, value_parser = parse_size)]
    pub convert_memory: Option<u64>,
    /// Memory for directory listings, all held together: each open directory keeps its
    /// listing until closed (about 100 bytes an entry), and each whole-tree view directory
    /// the kernel holds keeps its names; no user holds more than half. An opendir past it
    /// is ENOMEM.
    #[arg(long, default_value = DEFAULT_LISTING_MEMORY, value_parser = parse_size)]
    pub listing_memory: u64,
    /// Memory for variants held by open files, all users together (each variant counted
    /// once, however often it is open; no user more than half): an open file keeps its
    /// variant's bytes even after the cache evicted them. An open past it is ENOMEM.
    #[arg(long, default_value = DEFAULT_OPEN_MEMORY, value_parser = parse_size)]
    pub open_memory: u64,
    /// Threads answering kernel requests (reads of originals and cached variants).
    #[arg(long, default_value_t = DEFAULT_FUSE_THREADS, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub fuse_threads: u16,
    /// Seconds the kernel may cache names and attributes.
    #[arg(long, default_value_t = DEFAULT_ATTR_TTL.as_secs_f64())]
    pub attr_timeout: f64,
    /// Seconds a failed conversion is remembered before it is tried again.
    #[arg(long, default_value_t = DEFAULT_ERROR_TTL.as_secs_f64())]
    pub error_timeout: f64,
    /// Mount options, comma-separated: allow_other, allow_root, any option mount.fuse takes
    /// (ro, nosuid, nodev and default_permissions are always on), and every long option
    /// of this command as name=value or a bare flag name (cache_size=1GiB, no_passthrough).
    #[arg(short = 'o', value_delimiter = ',')]
    pub options: Vec<String>,
    /// Serve originals, and variants of 256 KiB or more, through imgfs instead of FUSE
    /// passthrough (the kernel reading the source file, or the variant's memory file, itself).
    #[arg(long)]
    pub no_passthrough: bool,
    /// Errnos of failed requests: `precise` (EINVAL bad spec, EFBIG over a limit, EIO not an
    /// image) for shells; `web` answers every error of the request with ENOENT, so nginx,
    /// caddy and python's http.server answer 404 instead of 500 (README, "Serving to
    /// browsers"); EACCES (403) and failures of the machine (EIO, 500) stay.
    #[arg(long, value_enum, default_value_t = Errnos::default())]
    pub errors: Errnos,
    /// Detach into the background once the mount is up (the exit status says whether it
    /// came up; errors until then go to stderr), then log to the systemd journal, or syslog.
    /// Implied when mount(8) runs imgfs (`mount -t fuse.imgfs`, fstab), where every long
    /// option is also an -o option: cache_size=256MiB, jobs=2, no_passthrough, ...
    #[arg(long)]
    pub daemon: bool,
    #[command(flatten)]
    pub disk: DiskCacheArgs,
    /// Keep converted variants in memory only.
    #[arg(long, conflicts_with = "disk_cache")]
    pub no_disk_cache: bool,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

/// The disk cache, shared by `mount` and `warm`.
/// The most a `--styles-file` may hold (a style is a line; thousands fit in far less).
pub const MAX_STYLES_FILE_BYTES: u64 = 1 << 20;

/// The text of the regular file `path`, of at most `max` bytes. Opened without blocking,
/// so a FIFO put in its place is refused instead of hanging the start of a mount (and, under
/// fstab, mount(8) waiting for it); third hostile review of 2026-12-03.
/// A symlink is followed: `--styles-file` is the user's own choice.
pub fn read_small_text(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    read_small_file(file, max)
}

/// The text of `file` if it is a regular file of at most `max` bytes (opened `O_NONBLOCK`,
/// so that what it turned out to be was not waited for).
pub fn read_small_file(file: std::fs::File, max: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > max {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} bytes, more than the {max} allowed", meta.len()),
        ));
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("more than the {max} bytes allowed"),
        ));
    }
    Ok(text)
}

#[derive(Debug, Args)]
pub struct DiskCacheArgs {
    /// Directory of the disk cache, which keeps converted variants across remounts and
    /// crashes (created with mode 0700; it needs user extended attributes, as ext4, xfs,
    /// btrfs and tmpfs have). It must be this user's, writable by no one else, below
    /// directories only root or this user can change (or sticky, as /tmp), and outside the
    /// source tree: otherwise it is not used. Mounts of one user may share one.
    /// Default: /var/cache/imgfs as root, else $XDG_CACHE_HOME/imgfs, else ~/.cache/imgfs.
    #[arg(long, value_name = "DIR")]
    pub disk_cache: Option<PathBuf>,
    /// Bound of the disk cache on disk (least recently used entries go first), e.g. 4GiB or
    /// 500MB: each entry counts its 4 KiB blocks plus one for its header, and the cache's
    /// directories take about 1 MiB of it.
    #[arg(long, default_value = DEFAULT_DISK_CACHE_SIZE, value_parser = parse_size)]
    pub disk_cache_size: u64,
}

impl DiskCacheArgs {
    pub fn options(&self) -> DiskCacheOptions {
        let defaults = DiskCacheOptions::default();
        DiskCacheOptions {
            dir: self.disk_cache.clone().unwrap_or(defaults.dir),
            bytes: self.disk_cache_size,
        }
    }
}

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// The directory whose images to convert (as `mount` would serve it).
    pub source: PathBuf,
    /// Specs as in variant names (`format,heic@resize,l_900`, `style,thumb`); one or more.
    #[arg(required = true, num_args = 1..)]
    pub specs: Vec<String>,
    #[command(flatten)]
    pub disk: DiskCacheArgs,
    /// Conversions run at once; default: cores.
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The image to convert.
    pub input: PathBuf,
    /// The chain: `format,heic@resize,l_900` or `image/format,heic/resize,l_900`.
    pub spec: String,
    /// Where to write the result ('-' for standard output).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The source root against which watermark image paths resolve (default: the input's
    /// directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

/// Options shared by `mount`, `convert` and `warm`: limits, qualities, metadata, styles.
#[derive(Debug, Args)]
pub struct ProcessingArgs {
    /// Largest source file read (EFBIG beyond).
    #[arg(long, default_value = DEFAULT_MAX_SOURCE_BYTES, value_parser = parse_size, help_heading = "Limits")]
    pub max_source_bytes: u64,
    /// Largest source width or height in pixels.
    #[arg(long, default_value_t = Limits::default().max_source_side, help_heading = "Limits")]
    pub max_source_side: u32,
    /// Largest source width x height x frames.
    #[arg(long, default_value_t = Limits::default().max_source_pixels, help_heading = "Limits")]
    pub max_source_pixels: u64,
    /// Largest output width or height.
    #[arg(long, default_value_t = Limits::default().max_output_side, help_heading = "Limits")]
    pub max_output_side: u32,
    /// Largest output width x height.
    #[arg(long, default_value_t = Limits::default().max_output_pixels, help_heading = "Limits")]
    pub max_output_pixels: u64,
    /// Largest estimated peak memory of one conversion (EFBIG beyond), e.g. 2GiB. Default:
    /// half of the machine's memory.
    #[arg(long, value_parser = parse_size, help_heading = "Limits")]
    pub max_conversion_memory: Option<u64>,
    /// JPEG quality when the request has none.
    #[arg(long, default_value_t = Qualities::default().jpeg, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Qualities")]
    pub jpeg_quality: u8,
    /// WebP quality when the request has none.
    #[arg(long, default_value_t = Qualities::default().webp, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Qualities")]
    pub webp_quality: u8,
    /// HEIC quality when the request has none, on libheif's scale (heif-enc -q N; README).
    #[arg(long, default_value_t = Qualities::default().heic, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Qualities")]
    pub heic_quality: u8,
    /// AVIF quality when the request has none, on libheif's scale (heif-enc -A -q N; README).
    #[arg(long, default_value_t = Qualities::default().avif, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Qualities")]
    pub avif_quality: u8,
    /// x265 preset of HEIC encodes: `auto` runs slow for pictures up to 1 MP (1024x1024) and ultrafast above; faster presets trade bytes for time. imgfs adds rdoq-level 2, sign hiding, psy-rd 0 and chroma QP offsets -2 on top, and RD level 1 at ultrafast (docs/benchmarks.md).
    #[arg(long, default_value = crate::pipeline::codec::DEFAULT_HEIC_PRESET, value_parser = clap::builder::PossibleValuesParser::new(crate::pipeline::codec::HEIC_PRESETS), help_heading = "Qualities")]
    pub heic_preset: String,
    /// Which outputs carry the source's EXIF. None carries its thumbnail, maker notes or
    /// other private blocks, and ICC colour profiles always go (they define the colours).
    #[arg(long, value_enum, default_value_t = Metadata::default(), help_heading = "Metadata")]
    pub metadata: Metadata,
    /// Every output keeps the source's EXIF (--metadata keep).
    #[arg(long, conflicts_with_all = ["metadata", "strip_metadata"], help_heading = "Metadata")]
    pub keep_metadata: bool,
    /// Every output keeps only Copyright of the source's EXIF (--metadata strip).
    #[arg(long, conflicts_with = "metadata", help_heading = "Metadata")]
    pub strip_metadata: bool,
    /// Encodes without a `quality` (JPEG, WebP, HEIC, AVIF stills) search per image for the
    /// smallest output whose SSIMULACRA2 reaches SCORE (70 high, 80 very high, 90 near
    /// lossless): up to 6 trial encodes from the format's default quality, so conversions
    /// take several times longer and hold more memory: images up to 8 MiP (4K UHD) are
    /// scored whole (about 110 bytes per pixel), larger ones in strips of 1,024 rows (about
    /// 31 bytes per pixel; strips read up to about 2 points high; README, "Target quality").
    #[arg(long, value_name = "SCORE", value_parser = clap::value_parser!(u8).range(30..=100), help_heading = "Qualities")]
    pub target_quality: Option<u8>,
    /// A named chain for `style,NAME`, as NAME=CHAIN (repeatable).
    #[arg(long = "style", value_name = "NAME=CHAIN")]
    pub styles: Vec<String>,
    /// A file of NAME=CHAIN lines for `style,NAME` (# comments allowed).
    #[arg(long)]
    pub styles_file: Option<PathBuf>,
}

/// A size like 512MiB or 20MB (also the parser of the size defaults, so they read alike).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("'{text}' is not a size like 512MiB: {e}"))
}

impl ProcessingArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            limits: Limits {
                max_source_bytes: self.max_source_bytes,
                max_source_side: self.max_source_side,
                max_source_pixels: self.max_source_pixels,
                max_output_side: self.max_output_side,
                max_output_pixels: self.max_output_pixels,
                max_conversion_bytes: self.max_conversion_memory,
            },
            qualities: Qualities {
                jpeg: self.jpeg_quality,
                webp: self.webp_quality,
                heic: self.heic_quality,
                avif: self.avif_quality,
            },
            metadata: self.metadata(),
            heic_preset: self.heic_preset.clone(),
            target_quality: self.target_quality,
        }
    }

    /// `--metadata`, or the flag that stands for one of its values.
    pub fn metadata(&self) -> Metadata {
        match (self.keep_metadata, self.strip_metadata) {
            (true, _) => Metadata::Keep,
            (_, true) => Metadata::Strip,
            _ => self.metadata,
        }
    }

    pub fn styles(&self) -> crate::error::Result<Styles> {
        let mut styles = Styles::default();
        if let Some(path) = &self.styles_file {
            let text = read_small_text(path, MAX_STYLES_FILE_BYTES)
                .map_err(|e| crate::error::Error::io(path.display(), e))?;
            styles.add_file(&text)?;
        }
        for style in &self.styles {
            let (name, chain) = style.split_once('=').ok_or_else(|| {
                crate::error::Error::spec(format!("--style '{style}': not NAME=CHAIN"))
            })?;
            styles.add(name, chain)?;
        }
        Ok(styles)
    }
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::MountOptions;

    /// Options not given take exactly the values of the Default impls.
    #[test]
    fn defaults_are_the_default_impls() {
        let cli = Cli::try_parse_from(["imgfs", "mount", "src", "mnt"]).unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("not a mount");
        };
        let options = MountOptions::default();
        assert_eq!(args.cache_size, options.cache_bytes);
        assert_eq!(usize::from(args.fuse_threads), options.fuse_threads);
        assert_eq!(args.attr_timeout, options.attr_ttl.as_secs_f64());
        assert_eq!(args.error_timeout, options.error_ttl.as_secs_f64());
        assert_eq!(args.jobs, None);
        assert_eq!(args.convert_memory, None);
        assert_eq!(!args.no_passthrough, options.passthrough);
        assert_eq!(Some(args.disk.options()), options.disk_cache);
        assert_eq!(args.errors, options.errors);
        let (settings, defaults) = (args.processing.settings(), Settings::default());
        assert_eq!(settings.limits, defaults.limits);
        assert_eq!(settings.qualities, defaults.qualities);
        assert_eq!(settings.heic_preset, defaults.heic_preset);
        assert_eq!(settings.metadata, defaults.metadata);
    }

    fn metadata(args: &[&str]) -> Result<Metadata, clap::error::ErrorKind> {
        let line = ["imgfs", "convert", "a.jpg", "format,webp", "-o", "b.webp"];
        let cli = Cli::try_parse_from(line.iter().chain(args)).map_err(|e| e.kind())?;
        let Command::Convert(args) = cli.command else {
            panic!("not a convert");
        };
        Ok(args.processing.settings().metadata)
    }

    #[test]
    fn metadata_flags_name_the_policy_and_exclude_each_other() {
        assert_eq!(metadata(&[]), Ok(Metadata::Auto));
        assert_eq!(metadata(&["--strip-metadata"]), Ok(Metadata::Strip));
        assert_eq!(metadata(&["--keep-metadata"]), Ok(Metadata::Keep));
        assert_eq!(metadata(&["--metadata", "keep"]), Ok(Metadata::Keep));
        assert_eq!(metadata(&["--metadata", "auto"]), Ok(Metadata::Auto));
        let conflict = Err(clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(metadata(&["--keep-metadata", "--strip-metadata"]), conflict);
        assert_eq!(
            metadata(&["--metadata", "auto", "--strip-metadata"]),
            conflict
        );
        assert_eq!(
            metadata(&["--keep-metadata", "--metadata", "strip"]),
            conflict
        );
    }

    #[test]
    fn a_styles_file_that_is_a_fifo_or_too_large_is_refused_at_once() {
        // Third hostile review of 2026-12-03: a FIFO as --styles-file hung the mount's start.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("styles");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = read_small_text(&fifo, MAX_STYLES_FILE_BYTES).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; 2000]).unwrap();
        assert!(read_small_text(&big, 1000).is_err());
        std::fs::write(&big, "thumb=resize,w_100\n").unwrap();
        assert_eq!(read_small_text(&big, 1000).unwrap(), "thumb=resize,w_100\n");
    }
}
