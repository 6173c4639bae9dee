//! The filesystem itself, with no FUSE type in it: names, inodes, versions, open files and
//! listings over the confined source tree, answering lookup, getattr, open, read, readdir
//! and readlink as plain results or through a callback (a request that needs a conversion
//! is answered from the converter's thread, so request threads never wait for one).
//! `crate::fuse` is the one adapter that turns kernel requests into these calls; tests
//! call them directly, without a mount and without root.

mod attr;
mod handles;
mod in_flight;
mod inodes;
mod listings;
mod names;
mod own_files;
mod pinned;
mod shares;
mod variants;
mod views;

#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing::{info, warn};

use crate::cache::disk::{refuse_inside, DiskCache};
use crate::cache::{Cache, Converted};
use crate::convert::Converter;
use crate::error::{Error, Result};
use crate::options::MountOptions;
use crate::pipeline::memory::MemoryGate;
use crate::pipeline::Settings;
use crate::source::{read_range, Caller, Found, Links, Root};
use crate::spec::Styles;

pub use attr::Attr;
use handles::Handles;
pub use handles::{DirEntry, OpenFile};
pub use inodes::ROOT;
use inodes::{Kind, Node, Table};
use names::Resolved;

/// What the core asks of the kernel side; the adapter implements it.
pub trait Kernel: Send + Sync {
    /// Drops the kernel's cached entry `name` in directory `parent`, so the next access
    /// of the name looks it up again. Must not block on the request being answered.
    fn forget_entry(&self, parent: u64, name: &OsStr);
}

/// Bytes a read answers with.
pub enum Data {
    Owned(Vec<u8>),
    /// A range of a variant's pinned bytes, not copied.
    Variant(Converted, std::ops::Range<usize>),
}

impl Data {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Data::Owned(bytes) => bytes,
            Data::Variant(out, range) => &out.bytes()[range.clone()],
        }
    }
}

/// Where READDIR(PLUS) hands its entries: the adapter's reply. It may be filled on a
/// converter thread (a view's images are converted first), so it is sent there.
pub trait DirReply: Send + 'static {
    /// Takes one entry; true once the reply is full (the entry was not taken).
    fn add(&mut self, listed: Listed<'_>) -> bool;
    /// Ends the reply: sends what was added, or the error.
    fn done(self, result: Result<()>);
}

/// One entry of a directory listing as readdir hands it out.
pub struct Listed<'a> {
    pub entry: &'a DirEntry,
    pub ino: u64,
    /// The offset of the entry after this one.
    pub next: u64,
    /// With `plus`: its attributes (the entry is then counted as looked up).
    pub attr: Option<Attr>,
}

pub struct ImgFs {
    root: Root,
    styles: Styles,
    converter: Converter,
    inodes: Mutex<Table>,
    handles: Handles,
    kernel: OnceLock<Arc<dyn Kernel>>,
    /// Variant lookups not yet answered, by directory.
    lookups: in_flight::Lookups,
    /// Nodes dropped on FORGET so far.
    forgotten: AtomicUsize,
    /// The current renderings of the mount's own files.
    snapshots: own_files::Snapshots,
    /// How old a view directory's names may be for a lookup (see `views::relist_interval`).
    view_relist: std::time::Duration,
}

/// Nodes dropped between two returns of freed memory to the system.
const FORGOTTEN_PER_TRIM: usize = 4096;

impl ImgFs {
    pub fn new(
        source: &Path,
        settings: Settings,
        styles: Styles,
        options: &MountOptions,
    ) -> std::io::Result<Arc<ImgFs>> {
        let root = Root::open(source)?;
        let root_meta = root
            .entry(Path::new(""))
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .meta;
        if !root_meta.is_dir() {
            return Err(std::io::Error::other(format!(
                "{}: not a directory",
                source.display()
            )));
        }
        let cache = Cache::new(options.cache_bytes, options.error_ttl);
        let disk = options.disk_cache.as_ref().and_then(|disk| {
            if let Err(err) = refuse_inside(&disk.dir, source) {
                warn!(
                    "disk cache {}: {err}; running without it",
                    disk.dir.display()
                );
                return None;
            }
            DiskCache::open_or_log(&disk.dir, disk.bytes, settings.fingerprint())
        });
        let gate = Arc::new(MemoryGate::new(options.convert_memory()));
        Ok(Arc::new(ImgFs {
            root,
            styles,
            converter: Converter::new(settings, (cache, disk), gate, options.jobs)?,
            inodes: Mutex::new(Table::new(&root_meta)),
            handles: Handles::new(
                handles::open_handles_bound(),
                options.listing_bytes,
                options.open_bytes,
            ),
            kernel: OnceLock::new(),
            lookups: in_flight::Lookups::default(),
            forgotten: AtomicUsize::new(1),
            snapshots: own_files::Snapshots::default(),
            view_relist: views::relist_interval(options.attr_ttl),
        }))
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn converter(&self) -> &Converter {
        &self.converter
    }

    /// Hands over the kernel side once the session exists.
    pub fn set_kernel(&self, kernel: Arc<dyn Kernel>) {
        let _ = self.kernel.set(kernel);
    }

    /// Whether a lookup of a variant in directory `dir` is waiting for its answer (the
    /// kernel holds the directory for it: see `in_flight`).
    pub fn looking_up_in(&self, dir: u64) -> bool {
        self.lookups.any_in(dir)
    }

    fn inodes(&self) -> MutexGuard<'_, Table> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node(&self, ino: u64) -> Result<Arc<Node>> {
        self.inodes()
            .get(ino)
            .ok_or_else(|| Error::NotFound(format!("inode {ino}: forgotten")))
    }

    /// Nodes held for the kernel (the root included).
    pub fn inode_count(&self) -> usize {
        self.inodes().held()
    }

    /// LOOKUP: the entry `name` in directory `parent`, counted as a reference the kernel
    /// holds. A variant is converted first (its exact size is part of the answer).
    pub fn lookup(
        self: &Arc<Self>,
        caller: &Caller,
        parent: u64,
        name: &OsStr,
        reply: impl FnOnce(Result<Attr>) + Send + 'static,
    ) {
        let dir = match self.node(parent) {
            Ok(dir) => dir,
            Err(err) => return reply(Err(err)),
        };
        let dir_id = match dir.kind {
            Kind::Own(_) => return reply(self.lookup_own(name)),
            Kind::ViewDir(_) => return self.lookup_in_view(caller, (parent, &dir), name, reply),
            Kind::Source { dev, ino } => (dev, ino),
            Kind::Variant(_) => {
                let path = dir.path.display();
                return reply(Err(Error::NotFound(format!("{path}: not a directory"))));
            }
        };
        let path = dir.path.join(name);
        match names::resolve(&self.root, (&dir.path, dir_id), name, caller) {
            Ok(Resolved::Source(meta)) => {
                let ino = self.inodes().look_up_source(&path, &meta);
                reply(Ok(Attr::source(ino, &meta)))
            }
            Ok(Resolved::Variant {
                source,
                found,
                spec,
            }) => {
                let made = (source, found, spec);
                self.lookup_variant(caller, (parent, name, &path), made, None, reply)
            }
            Ok(Resolved::Own(own)) => {
                let ino = self.inodes().look_up_own(&path, own);
                reply(self.own_attr(ino, own))
            }
            Ok(Resolved::Missing) if parent == ROOT && self.is_view(name) => {
                let ino = self.inodes().look_up_view_dir(&path);
                reply(self.view_dir_attr(ino, &path))
            }
            Ok(Resolved::Missing) => reply(Err(Error::NotFound(path.display().to_string()))),
            Err(err) => reply(Err(logged(&path, err))),
        }
    }

    /// Whether `name` in the root is a whole-tree view: `@style,NAME` of a mount's style.
    fn is_view(&self, name: &OsStr) -> bool {
        let style = name
            .to_str()
            .and_then(|n| n.strip_prefix(views::VIEW_PREFIX));
        style.is_some_and(|style| self.styles.contains(style))
    }

    /// GETATTR. A variant's size is always this version's, reconverted if evicted.
    pub fn getattr(
        self: &Arc<Self>,
        caller: &Caller,
        ino: u64,
        reply: impl FnOnce(Result<Attr>) + Send + 'static,
    ) {
        match self.node(ino) {
            Ok(node) => match &node.kind {
                Kind::Source { .. } => reply(
                    self.same_source(&node)
                        .map(|found| Attr::source(ino, &found.meta)),
                ),
                Kind::Variant(_) => self.getattr_variant(caller, ino, node.clone(), reply),
                Kind::Own(own) => reply(self.own_attr(ino, *own)),
                Kind::ViewDir(_) => reply(self.view_dir_attr(ino, &node.path)),
            },
            Err(err) => reply(Err(err)),
        }
    }

    /// The POSIX access ACL `ino` shows, which the kernel judges it by as it judges the mode
    /// (`FUSE_POSIX_ACL`): a source entry's own, a variant's source's cut to read, none for
    /// imgfs's own files and view directories.
    pub fn access_acl(&self, ino: u64) -> Result<Option<Vec<u8>>> {
        let node = self.node(ino)?;
        match &node.kind {
            Kind::Source { .. } => {
                let found = self.same_source(&node)?;
                found
                    .access_acl()
                    .map_err(|e| Error::io(node.path.display(), e))
            }
            Kind::Variant(_) => self.variant_acl(&node),
            Kind::Own(_) | Kind::ViewDir(_) => Ok(None),
        }
    }

    /// FORGET: the kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        let dropped = self.inodes().forget(ino, count);
        // The kernel forgets in bulk (memory pressure, drop_caches): give the freed nodes'
        // memory back now and then, not only after the next conversion.
        if dropped
            && self
                .forgotten
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(FORGOTTEN_PER_TRIM)
        {
            crate::convert::return_freed_memory();
        }
    }

    /// READLINK of a source symlink.
    pub fn readlink(&self, ino: u64) -> Result<PathBuf> {
        let node = self.node(ino)?;
        self.same_source(&node)?.read_link(&node.path)
    }

    /// The source entry `node` was looked up as, if its name still holds it; ESTALE once
    /// another file took its place: the kernel then looks the name up again (stat(2),
    /// open(2) and readlink(2) retry once by themselves) and judges what is there now.
    fn same_source(&self, node: &Node) -> Result<Found> {
        let found = self.root.entry(&node.path)?;
        match node.kind {
            Kind::Source { dev, ino } if (found.meta.dev, found.meta.ino) == (dev, ino) => {
                Ok(found)
            }
            _ => Err(Error::Stale(format!(
                "{}: another file since its lookup",
                node.path.display()
            ))),
        }
    }

    /// The source entry `node` names, for `caller` to read. While the name holds the file
    /// its lookup found, the kernel has judged it and the way to it (`default_permissions`,
    /// on attributes at most `--attr-timeout` old). Once another file took the name (renamed
    /// or swapped in, or a directory on the way replaced), the kernel's judgement was of the
    /// old one, so the way is walked again as the caller, each directory judged for search
    /// and the entry for read, as a lookup would: a swapped-in file is never read with the
    /// rights of the one it replaced.
    fn source_for(&self, caller: &Caller, node: &Node) -> Result<Found> {
        match self.same_source(node) {
            Err(Error::Stale(_)) => self.root.resolve(&node.path, Links::Last, caller),
            same => same,
        }
    }

    /// OPEN for reading: a source file as it is, or a variant's bytes, pinned until
    /// release. Answers the handle number and what it reads.
    pub fn open(
        self: &Arc<Self>,
        caller: &Caller,
        ino: u64,
        reply: impl FnOnce(Result<(u64, OpenFile)>) + Send + 'static,
    ) {
        let node = match self.node(ino) {
            Ok(node) => node,
            Err(err) => return reply(Err(err)),
        };
        match &node.kind {
            Kind::Source { .. } => {
                let opened = self
                    .source_for(caller, &node)
                    .and_then(|found| found.open(&node.path))
                    .and_then(|file| self.opened(caller.uid, OpenFile::Source(Arc::new(file))))
                    .map_err(|err| logged(&node.path, err));
                reply(opened)
            }
            Kind::Variant(_) => self.open_variant(caller, node.clone(), reply),
            Kind::Own(own) => reply(self.open_own(caller.uid, *own)),
            Kind::ViewDir(_) => reply(Err(Error::NotFound(format!(
                "{}: a directory",
                node.path.display()
            )))),
        }
    }

    /// A handle for `file`, opened by `uid` (ENOMEM past `--open-memory`).
    fn opened(&self, uid: u32, file: OpenFile) -> Result<(u64, OpenFile)> {
        Ok((self.handles.open(file.clone(), uid)?, file))
    }

    /// READ of an open file: at most `size` bytes from `offset` (fewer only at the end).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Data> {
        match self.handles.file(fh) {
            Some(OpenFile::Variant(out) | OpenFile::Snapshot(out)) => {
                let len = out.bytes().len();
                let start = (offset as usize).min(len);
                let end = start.saturating_add(size as usize).min(len);
                Ok(Data::Variant(out, start..end))
            }
            Some(OpenFile::Source(file)) => read_range(&file, offset, size)
                .map(Data::Owned)
                .map_err(|e| Error::io("read", e)),
            None => Err(Error::NotFound(format!("file handle {fh}: not open"))),
        }
    }

    /// RELEASE: the handle is closed; what it pinned is let go.
    pub fn release(&self, fh: u64) -> Option<OpenFile> {
        self.handles.release(fh)
    }

    /// STATFS: the source file system's.
    pub fn statfs(&self) -> Result<rustix::fs::StatVfs> {
        self.root
            .statvfs()
            .map_err(|e| Error::io(self.root.path().display(), e))
    }

    pub fn cache(&self) -> &Arc<Cache> {
        self.converter.cache()
    }

    pub fn memory_gate(&self) -> &Arc<MemoryGate> {
        self.converter.memory_gate()
    }
}

/// One log line for an error a request ends with before any conversion (the converter
/// logs its own): the path and the reason; a request's own errors at a lower level.
fn logged(path: &Path, err: Error) -> Error {
    if err.is_user_error() {
        info!("{}: {err}", path.display());
    } else {
        tracing::warn!("{}: {err}", path.display());
    }
    err
}
