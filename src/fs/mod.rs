//! The fuser adapter: names, inodes, attributes and errno. fuser types stay in this module.

mod attr;
mod handlers;
mod inodes;
mod names;
mod workers;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fuser::{BackingId, Config, MountOption, Notifier, Session, SessionACL};
use tracing::{debug, info, warn};

use crate::cache::{Cache, Converted, Key};
use crate::error::{Error, Result};
use crate::pipeline::memory::MemoryGate;
use crate::pipeline::{self, Settings};
use crate::source::{self, Identity};
use crate::spec::Styles;
use inodes::{Node, VariantNode};
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

/// What an open file reads from.
enum OpenFile {
    Real(File),
    /// The kernel reads the source itself through the inode's shared backing id; the file
    /// answers the few reads the kernel still sends (readahead(2)).
    Passthrough {
        file: File,
        ino: u64,
    },
    /// Pinned bytes: eviction from the cache cannot take them away while open.
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
    inodes: Mutex<inodes::Table>,
    files: Arc<Handles>,
    dirs: Mutex<HashMap<u64, Arc<Vec<handlers::DirEntry>>>>,
    ttl: Duration,
    passthrough_wanted: bool,
    passthrough: AtomicBool,
    /// One backing id per inode (the kernel refuses two for one inode), with its open count.
    backings: Mutex<HashMap<u64, (Arc<BackingId>, usize)>>,
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
        inodes: Mutex::new(inodes::Table::default()),
        files: Arc::new(Handles::default()),
        dirs: Mutex::new(HashMap::new()),
        ttl: options.attr_ttl,
        passthrough_wanted: options.passthrough,
        passthrough: AtomicBool::new(false),
        backings: Mutex::new(HashMap::new()),
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
    fn node(&self, ino: u64) -> Option<Arc<Node>> {
        self.inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ino)
    }

    fn intern(
        &self,
        path: &Path,
        variant: bool,
        kind: impl FnOnce() -> inodes::Kind,
    ) -> (u64, Arc<Node>) {
        self.inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .intern(path, variant, kind)
    }

    /// Gets a variant's bytes for its source's current version: from the cache, by joining
    /// the conversion in flight, or by starting one on a worker. `then` runs once, on
    /// whichever thread has the answer; the calling request thread never waits.
    fn with_variant(
        &self,
        ino: u64,
        node: &Node,
        variant: &VariantNode,
        then: impl FnOnce(Result<(Converted, std::fs::Metadata)>) + Send + 'static,
    ) {
        let name = node.path.display().to_string();
        let located = names::source_path(&self.root, &variant.source).and_then(|path| {
            std::fs::metadata(&path)
                .map(|m| (path, m))
                .map_err(|e| Error::io(&name, e))
        });
        let (path, meta) = match located {
            Ok(found) => found,
            Err(err) => {
                info!("{name}: {err}");
                return then(Err(err));
            }
        };
        let identity = Identity::of(&meta);
        self.note_version(ino, variant, identity);
        let key = Key {
            source: identity,
            spec: variant.canonical.clone(),
        };
        let waiter = Box::new(move |result: Result<Converted>| then(result.map(|c| (c, meta))));
        let Some(job) = self.cache.get_or_start(key, waiter) else {
            return;
        };
        let settings = self.settings.clone();
        let spec = variant.spec.clone();
        self.workers.spawn(move || {
            let started = Instant::now();
            let _span = tracing::debug_span!("convert", %name).entered();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let (bytes, _) = source::read(&path, &settings.limits)?;
                pipeline::convert(&bytes, &spec, &settings)
            }))
            .unwrap_or_else(|_| Err(Error::Decode("the conversion panicked".into())));
            match &result {
                Ok(out) => info!(
                    "converted {name} in {} ms: {} bytes",
                    started.elapsed().as_millis(),
                    out.bytes.len()
                ),
                Err(err) if err.is_user_error() => info!("{name}: {err}"),
                Err(err) => warn!("{name}: {err}"),
            }
            job.finish(result);
            return_freed_memory();
        });
    }

    /// Remembers which source version a variant served; when it changes, the kernel's
    /// cached pages of the variant are dropped (on another thread: the kernel may be
    /// waiting for this very request while it invalidates).
    fn note_version(&self, ino: u64, variant: &VariantNode, identity: Identity) {
        let mut last = variant
            .last_served
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let changed = last.is_some_and(|old| old != identity);
        *last = Some(identity);
        if changed {
            *variant.changed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            debug!("source of inode {ino} changed: invalidating its pages");
            if let Some(notifier) = self.notifier.get().cloned() {
                std::thread::spawn(move || {
                    let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
                });
            }
        }
    }
}
