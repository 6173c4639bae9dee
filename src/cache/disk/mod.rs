//! Converted variants on disk, under the memory tier: they survive a remount or a crash.
//!
//! Keyed like the memory tier ([`Key`], plus the settings that shape the bytes), bounded
//! in bytes with least-recently-used eviction, written to a temporary name and renamed into
//! place, and verified whenever read (header, length, checksum: see [`entry`]): a damaged,
//! truncated or foreign file is logged, deleted and reported as a miss, so it is converted
//! again. A failed write (ENOSPC) loses only the entry; the read was answered already.
//!
//! Mounts may share a directory: no lock is taken. Entries appear by rename and go by
//! unlink, so a reader holds either a whole file or none; each mount's index is advice
//! ([`index`]), a file gone under it is a miss, and every mount rescans the directory
//! after writing a quarter of the bound, so the others' entries count against it too.
//!
//! The checksum guards against damage, not forgery, so the directory must be private to
//! the user imgfs runs as, on a path only it and root can change ([`check_private`],
//! [`check_ancestors`]), and outside the source tree ([`refuse_inside`]).

mod entry;
mod index;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use memmap2::Mmap;
use rustix::fs::{fgetxattr, fsetxattr, XattrFlags};
use tracing::{debug, info, warn};

use super::{Key, Stored, MEMORY_FILE_MIN};
use entry::{Header, XATTR};
use index::{cost, Index, DIRECTORIES_COST};

/// Refuses a directory that another user owns or may write: whoever can write there can
/// plant an entry (its checksum is no secret, only a guard against damage) that every reader
/// of the mount is then served. A directory another user owns, they may make writable.
fn check_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return refuse_shared(format!(
            "owned by uid {}, not by this process's uid {me}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse_shared(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Refuses a directory (a canonical path) that another user could move away and replace
/// with one of theirs: each ancestor must be owned by root or this process's user and, if
/// others may write it, sticky (as /tmp is), so nobody renames an entry they do not own.
/// The rule OpenSSH applies to `authorized_keys` and sudo to its files.
fn check_ancestors(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)?;
        let at = ancestor.display();
        if meta.uid() != 0 && meta.uid() != me {
            return refuse_shared(format!(
                "its ancestor {at} is owned by uid {}, who could replace it",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return refuse_shared(format!(
                "its ancestor {at} is writable by group or others and not sticky (mode {:o}), so they could replace it",
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

fn refuse_shared(why: String) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{why}: whoever can write here could plant the bytes every reader is served; use a directory of this user's that only it can write"),
    ))
}

/// Refuses a cache directory in the source tree, `source` itself or below it, judged by
/// identity (device and inode) along its existing ancestors, so a symlink or a bind mount
/// into the source counts: nothing under the source is ever written.
pub fn refuse_inside(dir: &Path, source: &Path) -> io::Result<()> {
    match crate::source::within(dir, source)? {
        Some(at) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "inside the source directory (at {}), which imgfs never writes; choose a cache directory outside it",
                at.display()
            ),
        )),
        None => Ok(()),
    }
}

/// What the disk tier did, for metrics.
#[derive(Debug, Default)]
pub struct DiskStats {
    /// Lookups answered with verified bytes.
    pub hits: AtomicU64,
    /// Lookups that found no entry, or a damaged one.
    pub misses: AtomicU64,
    /// Entries written.
    pub writes: AtomicU64,
    /// Writes that failed (a full disk, a read-only directory); only the entry is lost.
    pub write_errors: AtomicU64,
    /// Damaged, truncated or foreign files found at an entry's place and deleted.
    pub corrupt: AtomicU64,
    /// Entries deleted to stay within the bound.
    pub evictions: AtomicU64,
}

pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    /// What of the mount's settings shapes the bytes, part of every key.
    context: String,
    index: Mutex<Index>,
    /// Bytes written since the directory was last scanned.
    written: AtomicU64,
    /// Numbers this process's temporary files apart.
    temp_serial: AtomicU64,
    pub stats: DiskStats,
}

impl DiskCache {
    /// Opens (creating it, mode 0700) the cache directory `dir` bounded by `capacity`
    /// bytes, for conversions made with settings `context`; scans it, evicting down to the
    /// bound. Fails if the directory cannot hold entries (not writable, no user xattrs).
    pub fn open(dir: &Path, capacity: u64, context: String) -> io::Result<Arc<DiskCache>> {
        let cache = DiskCache::empty(dir, capacity, context)?;
        cache.load()?;
        Ok(Arc::new(cache))
    }

    /// [`DiskCache::open`] for a mount, which answers at once: the directory is scanned on
    /// a thread of its own (about 2–3 s for 100,000 entries). Until the scan ends, entries
    /// are served (a hit opens its file by name, not through the index) and the bound
    /// counts only what this mount used. One log line either way; a directory that cannot
    /// hold the cache leaves the mount without one, as a cache is never worth not serving.
    pub fn open_or_log(dir: &Path, capacity: u64, context: String) -> Option<Arc<DiskCache>> {
        let started = Instant::now();
        let cache = match DiskCache::empty(dir, capacity, context) {
            Ok(cache) => Arc::new(cache),
            Err(err) => {
                warn!("disk cache {}: {err}; running without it", dir.display());
                return None;
            }
        };
        let scanning = cache.clone();
        let scan = move || {
            match scanning.load() {
            Ok(()) => info!(
                "disk cache {}: {} entries, {} of {}, scanned in {} ms",
                scanning.dir.display(),
                scanning.len(),
                bytesize::ByteSize(scanning.bytes()),
                bytesize::ByteSize(scanning.capacity),
                started.elapsed().as_millis()
            ),
            Err(err) => warn!(
                "disk cache {}: scan: {err}; entries written before are not counted until the next scan",
                scanning.dir.display()
            ),
        }
        };
        if let Err(err) = std::thread::Builder::new()
            .name("disk-cache-scan".into())
            .spawn(scan)
        {
            warn!("disk cache {}: {err}; running without it", dir.display());
            return None;
        }
        Some(cache)
    }

    /// The cache directory, created (mode 0700), checked private and probed, with an
    /// empty index.
    fn empty(dir: &Path, capacity: u64, context: String) -> io::Result<DiskCache> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // Canonical: a detached mount leaves its working directory, and a symbolic link on
        // the way, once resolved, cannot be pointed elsewhere later.
        let dir = &dir.canonicalize()?;
        check_private(dir)?;
        check_ancestors(dir)?;
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            capacity,
            context,
            index: Mutex::new(Index::new()),
            written: AtomicU64::new(0),
            temp_serial: AtomicU64::new(0),
            stats: DiskStats::default(),
        };
        cache.probe()?;
        Ok(cache)
    }

    /// Reads the directory into the index (keeping the entries being written), then
    /// evicts down to the bound.
    fn load(&self) -> io::Result<()> {
        let scanned = index::scan(&self.dir)?;
        let mut index = self.index();
        index.replace(scanned);
        let evicted = index.make_room(0, self.for_entries());
        drop(index);
        self.delete(evicted);
        Ok(())
    }

    /// Writes and deletes one temporary file with a header: the directory must take both.
    fn probe(&self) -> io::Result<()> {
        let (file, temp) = self.create_temp(&self.dir)?;
        let set = fsetxattr(&file, XATTR, b"probe", XattrFlags::empty());
        let _ = std::fs::remove_file(&temp);
        set.map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("no user extended attributes here ({e}); they hold each entry's header"),
            )
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// What of the bound the entries may take: the rest is the directories'.
    fn for_entries(&self) -> u64 {
        self.capacity.saturating_sub(DIRECTORIES_COST)
    }

    /// Bytes of the entries this mount knows of (whole blocks); at most the capacity.
    pub fn bytes(&self) -> u64 {
        self.index().bytes()
    }

    /// Entries this mount knows of.
    pub fn len(&self) -> usize {
        self.index().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // Every update is one step: a panic while holding the lock leaves consistent data.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn place(&self, key: &Key) -> (Vec<u8>, u128, PathBuf) {
        let serialized = entry::serialize_key(key, &self.context);
        let hash = entry::hash(&serialized);
        let path = self.dir.join(entry::relative_path(hash));
        (serialized, hash, path)
    }

    /// The verified bytes of `key`, if its entry is here and whole. Large ones are the
    /// cache file itself, mapped (FUSE passthrough reads it); small ones are copied.
    pub fn get(&self, key: &Key) -> Option<Stored> {
        let (serialized, hash, path) = self.place(key);
        let found = match File::open(&path) {
            Ok(file) => read_verified(file, &serialized),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.to_string()),
        };
        match found {
            Ok(Some((stored, file))) => {
                // Recency for the next scan, here or in another mount sharing the directory.
                let _ = file.set_modified(SystemTime::now());
                self.index().insert(hash, cost(stored.len()));
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(stored)
            }
            Ok(None) => {
                self.index().remove(hash);
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(reason) => {
                warn!("disk cache {}: {reason}; deleted", path.display());
                let _ = std::fs::remove_file(&path);
                self.index().remove(hash);
                self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether an entry for `key` is here with a matching header and length (its bytes are
    /// checked when read): to skip work already done.
    pub fn contains(&self, key: &Key) -> bool {
        let (serialized, _, path) = self.place(key);
        File::open(&path)
            .ok()
            .and_then(|file| Some((header_of(&file).ok()?, file.metadata().ok()?.len())))
            .is_some_and(|(header, len)| header.check(&serialized, len).is_ok())
    }

    /// Stores `bytes` as the entry of `key`, evicting least recently used entries to make
    /// room. An entry larger than the whole bound is not stored.
    pub fn put(&self, key: &Key, bytes: &[u8]) -> io::Result<()> {
        let (serialized, hash, path) = self.place(key);
        let cost = cost(bytes.len() as u64);
        if cost > self.for_entries() {
            debug!(
                "disk cache: {} bytes exceed the bound; not stored",
                bytes.len()
            );
            return Ok(());
        }
        let evicted = {
            let mut index = self.index();
            let evicted = index.make_room(cost, self.for_entries());
            index.reserve(hash, cost);
            evicted
        };
        self.delete(evicted);
        let written = self.write(&path, &Header::of(serialized, bytes), bytes);
        self.index().written(hash, written.is_ok());
        if let Err(err) = written {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        if self.written.fetch_add(cost, Ordering::Relaxed) + cost > self.capacity / 4 {
            self.rescan();
        }
        Ok(())
    }

    /// Writes the entry to a temporary name beside `path`, then renames it into place.
    fn write(&self, path: &Path, header: &Header, bytes: &[u8]) -> io::Result<()> {
        let subdir = path.parent().expect("entries are in subdirectories");
        match std::fs::DirBuilder::new().mode(0o700).create(subdir) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
            _ => {}
        }
        let (mut file, temp) = self.create_temp(subdir)?;
        let written = file
            .write_all(bytes)
            .and_then(|()| {
                Ok(fsetxattr(
                    &file,
                    XATTR,
                    &header.encode(),
                    XattrFlags::empty(),
                )?)
            })
            .and_then(|()| std::fs::rename(&temp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// A new temporary file in `dir` (the cache directory or one of its subdirectories).
    fn create_temp(&self, dir: &Path) -> io::Result<(File, PathBuf)> {
        let serial = self.temp_serial.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{}-{serial}", entry::TEMP_PREFIX, std::process::id());
        let temp = dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&temp)?;
        Ok((file, temp))
    }

    /// Deletes evicted entries (a reader that opened one keeps its bytes).
    fn delete(&self, hashes: Vec<u128>) {
        for hash in hashes {
            let path = self.dir.join(entry::relative_path(hash));
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => debug!("disk cache {}: {err}", path.display()),
            }
        }
    }

    /// Reads the directory again (entries other mounts wrote, or deleted), then evicts
    /// down to the bound.
    fn rescan(&self) {
        self.written.store(0, Ordering::Relaxed);
        if let Err(err) = self.load() {
            debug!("disk cache {}: rescan: {err}", self.dir.display());
        }
    }
}

fn header_of(file: &File) -> Result<Header, String> {
    let mut raw = vec![0; 4096];
    let len = match fgetxattr(file, XATTR, &mut raw) {
        Ok(len) => len,
        Err(rustix::io::Errno::NODATA) => return Err("no imgfs header (a foreign file)".into()),
        Err(rustix::io::Errno::RANGE) => return Err("a damaged header".into()),
        Err(err) => return Err(format!("header: {err}")),
    };
    Header::decode(&raw[..len])
}

/// The bytes of the entry open as `file` if it is the whole entry of `key`: Ok(None) if
/// it is not a regular file (nothing of ours), Err(reason) if damaged.
fn read_verified(file: File, key: &[u8]) -> Result<Option<(Stored, File)>, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Ok(None);
    }
    let header = header_of(&file)?;
    header.check(key, meta.len())?;
    let stored = if meta.len() < MEMORY_FILE_MIN as u64 {
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&file).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        header.check_bytes(&bytes)?;
        Stored::Heap(bytes)
    } else {
        // SAFETY: the map is unsound only if the file is truncated or written while mapped.
        // Cache files are never written in place: each is written once under a temporary
        // name, renamed into place, and later only unlinked (the inode, and so the map,
        // outlives that). The directory is imgfs's own (mode 0700); a process with the
        // rights to write in it anyway could as well write this process's memory.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
        // From the page cache, hashing the map copies nothing; from the disk, faulting a
        // map in page by page is several times slower than reading it.
        if resident(&map) {
            header.check_bytes(&map)?;
        } else {
            header.check_file(&file)?;
        }
        Stored::Mapped {
            file: file.try_clone().map_err(|e| e.to_string())?,
            map,
        }
    };
    Ok(Some((stored, file)))
}

/// Whether every page of `map` is in the page cache.
fn resident(map: &Mmap) -> bool {
    let pages = map.len().div_ceil(4096);
    let mut status = vec![0u8; pages];
    // SAFETY: `map` is a live mapping of `map.len()` bytes starting at a page boundary,
    // and `status` has one byte per 4 KiB page of it (pages are 4 KiB or larger, so that
    // is at least the one byte per page mincore writes).
    let done = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), status.as_mut_ptr()) };
    done == 0 && status.iter().all(|page| page & 1 == 1)
}

#[cfg(test)]
mod tests;
