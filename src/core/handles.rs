//! Open files and directory listings, by handle number, and the memory they hold.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::FileType;

use super::pinned::PinnedBytes;
use super::shares::Shares;
use crate::cache::Converted;
use crate::error::{Error, Result};
use crate::source::Meta;

/// What an open file reads.
#[derive(Clone)]
pub enum OpenFile {
    /// A source file served unchanged. With passthrough the kernel reads it itself, and
    /// imgfs only answers the few reads it still sends (readahead(2)).
    Source(Arc<File>),
    /// Pinned bytes: eviction from the cache cannot take them away while open. Large ones
    /// are a memory file or a disk-cache file (see [`crate::cache::Stored`]) that
    /// passthrough reads likewise.
    Variant(Converted),
    /// A rendering of one of the mount's own files: a later open may see another size,
    /// so the kernel must not cache its pages (direct I/O).
    Snapshot(Converted),
}

impl OpenFile {
    /// The file the kernel may read by itself (FUSE passthrough), if there is one.
    pub fn backing_file(&self) -> Option<&File> {
        match self {
            OpenFile::Source(file) => Some(file),
            OpenFile::Variant(out) => out.backing_file(),
            OpenFile::Snapshot(_) => None,
        }
    }
}

/// One entry of a directory listing taken at opendir.
pub struct DirEntry {
    pub name: OsString,
    pub kind: FileType,
    /// The entry's inode number on its file system (readdir's d_ino).
    pub source_ino: u64,
    /// In a whole-tree view, an image's source name (the name shown has another extension).
    pub source: Option<OsString>,
}

impl DirEntry {
    /// What the entry holds in memory, counted against [`ListedBytes`].
    pub fn cost(&self) -> u64 {
        let source = self.source.as_ref().map_or(0, |s| s.len());
        (std::mem::size_of::<DirEntry>() + self.name.len() + source) as u64
    }
}

/// A directory as listed at opendir, and its descriptor, so readdirplus stats its entries
/// relative to it (never through a path).
pub struct Listing {
    /// None for the mount's own directory, which has no descriptor.
    pub dir: Option<OwnedFd>,
    pub meta: Meta,
    pub entries: Vec<DirEntry>,
    /// A directory of a whole-tree view.
    pub view: bool,
    /// The entries' memory, counted until the handle is released (held for its drop).
    pub _charge: Charge,
}

/// The memory all directory listings hold (open directory handles, and the names of the
/// whole-tree view directories the kernel holds), bounded by `--listing-memory` for all
/// users together, and by half of it for each user, so one user cannot take it all: a
/// directory of a million entries lists into about 100 MiB, and anyone may open it many
/// times over.
#[derive(Debug)]
pub struct ListedBytes {
    held: Mutex<Shares>,
}

/// Bytes of one listing in [`ListedBytes`], counted to the user it was made for, given
/// back when dropped.
#[derive(Debug)]
pub struct Charge {
    account: Arc<ListedBytes>,
    uid: u32,
    bytes: u64,
}

impl Charge {
    /// Counts `bytes` more before they are spent; past the bound for all users, or half of
    /// it for this one, ENOMEM for listing `dir`.
    pub fn add(&mut self, bytes: u64, dir: &std::path::Path) -> Result<()> {
        let mut held = lock(&self.account.held);
        held.add(self.uid, bytes, bytes).map_err(|over| {
            Error::NoMemory(format!(
                "{}: not listed: {} directory listings held open would pass {} \
                 (--listing-memory {}, half of it per user)",
                dir.display(),
                over.whose(),
                bytesize::ByteSize(over.bound()),
                bytesize::ByteSize(held.bound()),
            ))
        })?;
        self.bytes += bytes;
        Ok(())
    }

    /// Counts every entry of `entries`, in order.
    pub fn add_all(&mut self, entries: &[DirEntry], dir: &std::path::Path) -> Result<()> {
        entries
            .iter()
            .try_for_each(|entry| self.add(entry.cost(), dir))
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        lock(&self.account.held).remove(self.uid, self.bytes, self.bytes);
    }
}

/// Descriptors counted by [`Handles::hold_descriptors`], given back on drop.
pub struct DescriptorHold {
    open: Arc<Mutex<Shares>>,
    uid: u32,
    count: u64,
}

impl Drop for DescriptorHold {
    fn drop(&mut self) {
        lock(&self.open).remove(self.uid, self.count, self.count);
    }
}

/// The number of open handles as [`Shares`] of one each: the bound for all users, and half
/// of it for each, past which an open is ENFILE.
fn count_open(open: &mut Shares, uid: u32) -> Result<()> {
    open.add(uid, 1, 1).map_err(|over| {
        Error::TooManyOpen(format!(
            "not opened: {} {} open files and directories are held (the mount's table: \
             three quarters of its descriptor limit, half of it per user)",
            over.whose(),
            over.bound()
        ))
    })
}

/// How many handles may be open at once: three quarters of the process's descriptor limit
/// (the rest for the cache's memory files, conversions' reads and the disk cache).
pub fn open_handles_bound() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let descriptors = limit.current.unwrap_or(1 << 20).min(1 << 20) as usize;
    descriptors / 4 * 3
}

pub struct Handles {
    /// Open files, and the uid that opened each.
    files: Mutex<HashMap<u64, (OpenFile, u32)>>,
    pinned: Mutex<PinnedBytes>,
    /// Open handles, files and directories, and the descriptors of queued conversions'
    /// inputs: most handles hold a descriptor (a source file, a listed directory), and the
    /// process has a limited number; a mount out of them could open nothing for anyone.
    open: Arc<Mutex<Shares>>,
    /// Open directories, and the uid that opened each.
    dirs: Mutex<HashMap<u64, (Arc<Listing>, u32)>>,
    next: AtomicU64,
    listed: Arc<ListedBytes>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one step, so a panic while holding the lock leaves consistent data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Handles {
    /// At most `open_handles` handles (see [`open_handles_bound`]), whose listings hold at
    /// most `listing_bytes` together, and whose open variants `open_bytes` (see
    /// [`PinnedBytes`]).
    pub fn new(open_handles: usize, listing_bytes: u64, open_bytes: u64) -> Handles {
        Handles {
            files: Mutex::default(),
            pinned: Mutex::new(PinnedBytes::new(open_bytes)),
            open: Arc::new(Mutex::new(Shares::new(open_handles as u64, false))),
            dirs: Mutex::default(),
            next: AtomicU64::new(0),
            listed: Arc::new(ListedBytes {
                held: Mutex::new(Shares::new(listing_bytes, false)),
            }),
        }
    }

    /// An empty charge for a listing about to be made for `uid`.
    pub fn charge(&self, uid: u32) -> Charge {
        Charge {
            account: self.listed.clone(),
            uid,
            bytes: 0,
        }
    }

    /// Bytes the listings hold now.
    #[cfg(test)]
    pub fn listed_bytes(&self) -> u64 {
        lock(&self.listed.held).total()
    }

    fn next_number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A handle for `file`, opened by `uid`; ENFILE if the table of handles is full, ENOMEM
    /// if the bytes it pins do not fit.
    pub fn open(&self, file: OpenFile, uid: u32) -> Result<u64> {
        count_open(&mut lock(&self.open), uid)?;
        if let OpenFile::Variant(out) | OpenFile::Snapshot(out) = &file {
            if let Err(err) = lock(&self.pinned).pin(uid, out) {
                lock(&self.open).remove(uid, 1, 1);
                return Err(err);
            }
        }
        let fh = self.next_number();
        lock(&self.files).insert(fh, (file, uid));
        Ok(fh)
    }

    pub fn file(&self, fh: u64) -> Option<OpenFile> {
        lock(&self.files).get(&fh).map(|(file, _)| file.clone())
    }

    pub fn release(&self, fh: u64) -> Option<OpenFile> {
        let (file, uid) = lock(&self.files).remove(&fh)?;
        if let OpenFile::Variant(out) | OpenFile::Snapshot(out) = &file {
            lock(&self.pinned).unpin(uid, out);
        }
        lock(&self.open).remove(uid, 1, 1);
        Some(file)
    }

    /// Bytes of variants open files hold now.
    #[cfg(test)]
    pub fn pinned_bytes(&self) -> u64 {
        lock(&self.pinned).total()
    }

    /// Counts `count` descriptors that `uid`'s request holds outside a handle (a variant's
    /// inputs until their conversion ends) in the same table as open handles, until the
    /// returned hold is dropped; ENFILE past it.
    pub fn hold_descriptors(&self, uid: u32, count: u64) -> Result<DescriptorHold> {
        lock(&self.open).add(uid, count, count).map_err(|over| {
            Error::TooManyOpen(format!(
                "not converted: {} {} descriptors are held by open files and directories \
                 and by conversions waiting for a worker (three quarters of the mount's \
                 descriptor limit, half of it per user)",
                over.whose(),
                over.bound()
            ))
        })?;
        Ok(DescriptorHold {
            open: self.open.clone(),
            uid,
            count,
        })
    }

    /// A handle for `listing`, opened by `uid`; ENFILE if the table of handles is full.
    pub fn open_dir(&self, listing: Listing, uid: u32) -> Result<u64> {
        count_open(&mut lock(&self.open), uid)?;
        let fh = self.next_number();
        lock(&self.dirs).insert(fh, (Arc::new(listing), uid));
        Ok(fh)
    }

    pub fn dir(&self, fh: u64) -> Option<Arc<Listing>> {
        lock(&self.dirs)
            .get(&fh)
            .map(|(listing, _)| listing.clone())
    }

    pub fn release_dir(&self, fh: u64) {
        if let Some((_, uid)) = lock(&self.dirs).remove(&fh) {
            lock(&self.open).remove(uid, 1, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> OpenFile {
        OpenFile::Source(Arc::new(File::open("/dev/null").unwrap()))
    }

    /// Fourth hostile review of 2026-12-03: a queued conversion's inputs held descriptors
    /// that no table counted.
    #[test]
    fn descriptors_held_for_conversions_count_with_open_handles_until_dropped() {
        let handles = Handles::new(8, 1 << 20, 1 << 20);
        let held = handles.hold_descriptors(7, 3).unwrap();
        handles
            .open(OpenFile::Source(Arc::new(tempfile::tempfile().unwrap())), 7)
            .unwrap();
        assert!(matches!(
            handles.hold_descriptors(7, 1),
            Err(Error::TooManyOpen(_))
        ));
        let other = handles.hold_descriptors(8, 4).unwrap();
        drop((held, other));
        assert!(handles.hold_descriptors(7, 3).is_ok());
        assert_eq!(lock(&handles.open).held_by(7), 1, "the open handle alone");
    }

    /// Second hostile review of 2026-12-03: every open file or directory holds a descriptor,
    /// and one user could hold them all, so the mount could open nothing for anyone.
    #[test]
    fn open_handles_are_bounded_per_user_and_together() {
        let handles = Handles::new(4, 1 << 20, 1 << 20);
        let mine: Vec<u64> = (0..2).map(|_| handles.open(source(), 1).unwrap()).collect();
        let err = handles.open(source(), 1).unwrap_err();
        assert_eq!(err.errno(), libc::ENFILE);
        assert!(err.to_string().contains("this user's 2"), "{err}");
        let theirs = handles.open(source(), 2).unwrap();
        let listing = Listing {
            dir: None,
            meta: crate::source::Meta::of(File::open("/").unwrap()).unwrap(),
            entries: Vec::new(),
            view: false,
            _charge: handles.charge(2),
        };
        let dir = handles.open_dir(listing, 2).unwrap();
        let err = handles.open(source(), 3).unwrap_err();
        assert!(err.to_string().contains("all users' 4"), "{err}");
        handles.release(mine[0]);
        handles.release_dir(dir);
        handles.open(source(), 3).unwrap();
        handles.open(source(), 1).unwrap();
        handles.release(theirs);
        assert_eq!(lock(&handles.open).total(), 3);
    }
}
