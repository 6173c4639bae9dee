//! The fuser adapter: names, inodes, attributes and errno. fuser types stay in this module.

mod attr;
mod handlers;
mod inodes;
mod names;
mod passthrough;
mod variants;
mod workers;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fuser::{Config, MountOption, Notifier, Session, SessionACL};

use crate::cache::{Cache, Converted};
use crate::pipeline::memory::MemoryGate;
use crate::pipeline::Settings;
use crate::spec::Styles;
use inodes::Node;
use workers::Workers;

/// How a mount behaves, besides what a conversion needs ([`Settings`]).
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub cache_bytes: u64,
    /// Conversions at once.
    pub jobs: usize,
    /// Budget of the conversions' memory estimates; None = jobs × [`CONVERT_MEMORY_PER_JOB`].
    pub convert_memory: Option<u64>,
    /// Threads reading kernel requests.
    pub fuse_threads: usize,
    pub attr_ttl: Duration,
    pub error_ttl: Duration,
    /// `-o` options: allow_other, allow_root, or anything mount.fuse takes.
    pub options: Vec<String>,
    pub passthrough: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_bytes: 512 << 20,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            convert_memory: None,
            fuse_threads: 4,
            attr_ttl: Duration::from_secs(1),
            error_ttl: Duration::from_secs(10),
            options: Vec::new(),
            passthrough: true,
        }
    }
}

/// Room per job for a 16 MP frame (48 MiB) converted at 1.5 frames and its source.
pub const CONVERT_MEMORY_PER_JOB: u64 = 80 << 20;

impl MountOptions {
    pub fn convert_memory(&self) -> u64 {
        self.convert_memory
            .unwrap_or(self.jobs as u64 * CONVERT_MEMORY_PER_JOB)
    }
}

/// An open file: its inode (see [`passthrough::Passthrough::close`]) and what it reads.
struct OpenFile {
    ino: u64,
    reads: Reads,
}

enum Reads {
    /// An original's source. With passthrough the kernel reads it itself, and imgfs only
    /// answers the few reads it still sends (readahead(2)).
    Source(Arc<File>),
    /// Pinned bytes: eviction from the cache cannot take them away while open. Large ones
    /// are a memory file (see [`crate::cache::Stored`]) that passthrough reads likewise.
    Variant(Converted),
}

/// Open files by handle number, shared with the conversion threads that answer opens.
#[derive(Default)]
struct Handles {
    files: Mutex<HashMap<u64, OpenFile>>,
    next: AtomicU64,
}

impl Handles {
    fn insert(&self, file: OpenFile) -> u64 {
        let fh = self.next_number();
        self.lock().insert(fh, file);
        fh
    }

    fn next_number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, OpenFile>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct ImgFs {
    root: PathBuf,
    settings: Arc<Settings>,
    styles: Styles,
    cache: Arc<Cache>,
    workers: Workers,
    inodes: Arc<Mutex<inodes::Table>>,
    files: Arc<Handles>,
    dirs: Mutex<HashMap<u64, Arc<Vec<handlers::DirEntry>>>>,
    ttl: Duration,
    passthrough_wanted: bool,
    passthrough: Arc<passthrough::Passthrough>,
    notifier: Arc<OnceLock<Notifier>>,
}

/// glibc keeps the small blocks a conversion freed (codec tables, rows, x265 and libwebp
/// thread state) in per-thread arenas; trimming after each conversion gives them back, so
/// the mount's RSS falls to the cache and what runs (README, "Memory").
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A mount ready to run, and its cache (for statistics).
pub struct Mount {
    pub session: Session<ImgFs>,
    pub cache: Arc<Cache>,
    pub memory_gate: Arc<MemoryGate>,
}

/// Mounts `source` at `mountpoint`; the caller runs (or spawns) the session.
pub fn mount(
    source: &Path,
    mountpoint: &Path,
    mut settings: Settings,
    styles: Styles,
    options: &MountOptions,
) -> std::io::Result<Mount> {
    let root = source.canonicalize()?;
    if !root.is_dir() {
        return Err(std::io::Error::other(format!(
            "{}: not a directory",
            source.display()
        )));
    }
    settings.root = Some(root.clone());
    let memory_gate = Arc::new(MemoryGate::new(options.convert_memory()));
    settings.memory_gate = Some(memory_gate.clone());
    let cache = Cache::new(options.cache_bytes, options.error_ttl);
    let workers = Workers::new(options.jobs)?;
    let notifier = Arc::new(OnceLock::new());
    let fs = ImgFs {
        root: root.clone(),
        settings: Arc::new(settings),
        styles,
        cache: cache.clone(),
        workers,
        inodes: Arc::new(Mutex::new(inodes::Table::default())),
        files: Arc::new(Handles::default()),
        dirs: Mutex::new(HashMap::new()),
        ttl: options.attr_ttl,
        passthrough_wanted: options.passthrough,
        passthrough: Arc::default(),
        notifier: notifier.clone(),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::DefaultPermissions,
        MountOption::FSName(format!("imgfs:{}", root.display())),
        MountOption::Subtype("imgfs".into()),
    ];
    for option in options.options.iter().filter(|o| !o.is_empty()) {
        match option.as_str() {
            "allow_other" => config.acl = SessionACL::All,
            "allow_root" => config.acl = SessionACL::RootAndOwner,
            "ro" | "default_permissions" => {}
            "rw" => return Err(std::io::Error::other("imgfs is read-only: -o rw refused")),
            other => config
                .mount_options
                .push(MountOption::CUSTOM(other.to_string())),
        }
    }
    config.n_threads = Some(options.fuse_threads.max(1));
    config.clone_fd = true;
    let session = Session::new(fs, mountpoint, &config)?;
    let _ = notifier.set(session.notifier());
    Ok(Mount {
        session,
        cache,
        memory_gate,
    })
}

impl ImgFs {
    fn inodes(&self) -> std::sync::MutexGuard<'_, inodes::Table> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node(&self, ino: u64) -> Option<Arc<Node>> {
        self.inodes().get(ino)
    }

    /// The inode of an entry of the source tree.
    fn real(&self, path: &Path) -> u64 {
        self.inodes().real(path).0
    }
}
