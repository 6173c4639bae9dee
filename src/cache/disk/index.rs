//! What a mount knows of its cache directory: the entries by hash, least recently used
//! first, and their bytes. The directory is the truth and the index only advice (another
//! mount may share the directory): a listed entry may be gone, an unlisted one may appear.
//! It is built by scanning the directory, recent use being the files' mtimes (a hit
//! touches its file), so the order survives restarts and is shared between mounts.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use lru::LruCache;
use rustix::fs::{AtFlags, Dir, Mode, OFlags};

use super::entry::{parse_name, TEMP_PREFIX};

/// The unit an entry's size is counted in: what a file system allocates at least.
const BLOCK: u64 = 4096;
/// A temporary file older than this was left by a writer that died (a write takes
/// seconds at most); younger ones may be another mount's write in progress.
const TEMP_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// What an entry of `len` bytes counts against the bound: its blocks, and one more for its
/// header, an extended attribute of about 300 bytes that does not fit in an ext4 inode of
/// 256 bytes and takes a block of its own there (third hostile review of 2026-12-03: a
/// stream of tiny variants took 2.25 times the bound on disk).
pub fn cost(len: u64) -> u64 {
    (len.div_ceil(BLOCK).max(1) + 1) * BLOCK
}

/// What the directories take whatever the entries: the cache directory and its 256
/// subdirectories, a block each.
pub const DIRECTORIES_COST: u64 = 257 * BLOCK;

pub struct Index {
    entries: LruCache<u128, u64>,
    bytes: u64,
    /// Entries being written (counted already, not yet in the directory).
    writing: HashMap<u128, u64>,
}

impl Index {
    pub fn new() -> Index {
        Index {
            entries: LruCache::unbounded(),
            bytes: 0,
            writing: HashMap::new(),
        }
    }

    /// Counts `hash` (of `cost`) before it is written, so writes in parallel cannot
    /// together pass the bound; [`Index::written`] ends it.
    pub fn reserve(&mut self, hash: u128, cost: u64) {
        self.insert(hash, cost);
        self.writing.insert(hash, cost);
    }

    /// The write of `hash` ended; if it failed, the entry is not counted any more.
    pub fn written(&mut self, hash: u128, ok: bool) {
        self.writing.remove(&hash);
        if !ok {
            self.remove(hash);
        }
    }

    /// Takes what a scan found, keeping the entries being written.
    pub fn replace(&mut self, mut scanned: Index) {
        for (&hash, &cost) in &self.writing {
            scanned.insert(hash, cost);
        }
        scanned.writing = std::mem::take(&mut self.writing);
        *self = scanned;
    }

    /// Records `hash` (of `cost`) as the most recently used entry.
    pub fn insert(&mut self, hash: u128, cost: u64) {
        if let Some(old) = self.entries.put(hash, cost) {
            self.bytes -= old;
        }
        self.bytes += cost;
    }

    pub fn remove(&mut self, hash: u128) {
        if let Some(old) = self.entries.pop(&hash) {
            self.bytes -= old;
        }
    }

    /// Takes the least recently used entries out until `room` more bytes fit under
    /// `capacity`; returns them, for the caller to delete.
    pub fn make_room(&mut self, room: u64, capacity: u64) -> Vec<u128> {
        let mut evicted = Vec::new();
        while self.bytes + room > capacity {
            let Some((hash, cost)) = self.entries.pop_lru() else {
                break;
            };
            self.bytes -= cost;
            evicted.push(hash);
        }
        evicted
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Lists the entries below `dir` (its 256 subdirectories), oldest mtime first, into an
/// index, and deletes temporary files left by writers that died. Names that are not
/// entries' are left alone: they are not ours.
pub fn scan(dir: &Path) -> std::io::Result<Index> {
    let mut found: Vec<(SystemTime, u128, u64)> = Vec::new();
    let top = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for sub in Dir::read_from(&top)? {
        let sub = sub?;
        let sub_name = OsStr::from_bytes(sub.file_name().to_bytes());
        let Some(sub_name) = sub_name.to_str().filter(|n| n.len() == 2) else {
            continue;
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(subdir) = rustix::fs::openat(&top, sub_name, flags, Mode::empty()) else {
            continue; // not a directory, or gone
        };
        for entry in Dir::read_from(&subdir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Ok(text) = name.to_str() else {
                continue;
            };
            let Ok(stat) = rustix::fs::statat(&subdir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue; // deleted meanwhile, by another mount
            };
            let meta = crate::source::Meta::from_stat(&stat);
            let mtime =
                SystemTime::UNIX_EPOCH + Duration::new(meta.mtime.0.max(0) as u64, meta.mtime.1);
            if text.starts_with(TEMP_PREFIX) {
                let stale = mtime.elapsed().is_ok_and(|age| age > TEMP_MAX_AGE);
                if stale && meta.is_file() {
                    let _ = rustix::fs::unlinkat(&subdir, name, AtFlags::empty());
                }
                continue;
            }
            if let (Some(hash), true) = (parse_name(sub_name, text), meta.is_file()) {
                found.push((mtime, hash, meta.size));
            }
        }
    }
    found.sort_unstable_by_key(|(mtime, ..)| *mtime);
    let mut index = Index::new();
    for (_, hash, len) in found {
        index.insert(hash, cost(len));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::disk::entry::relative_path;

    #[test]
    fn room_is_made_least_recently_used_first() {
        let mut index = Index::new();
        for hash in 1..=3 {
            index.insert(hash, BLOCK);
        }
        index.insert(1, BLOCK); // used again: now the most recent
        assert_eq!(index.make_room(BLOCK, 3 * BLOCK), vec![2]);
        assert_eq!(index.bytes(), 2 * BLOCK);
        assert_eq!(index.make_room(10 * BLOCK, 3 * BLOCK), vec![3, 1]);
        assert_eq!(index.len(), 0);
        assert_eq!(index.bytes(), 0);
    }

    #[test]
    fn a_rescan_keeps_the_entries_being_written() {
        let mut index = Index::new();
        index.reserve(5, BLOCK);
        index.insert(6, BLOCK);
        let mut scanned = Index::new();
        scanned.insert(7, BLOCK);
        index.replace(scanned);
        assert_eq!((index.len(), index.bytes()), (2, 2 * BLOCK));
        index.written(5, false);
        assert_eq!((index.len(), index.bytes()), (1, BLOCK));
    }

    #[test]
    fn costs_are_whole_blocks_and_one_for_the_header() {
        assert_eq!(cost(0), 2 * BLOCK);
        assert_eq!(cost(1), 2 * BLOCK);
        assert_eq!(cost(BLOCK + 1), 3 * BLOCK);
    }

    #[test]
    fn a_scan_orders_by_mtime_keeps_foreign_names_and_drops_stale_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let place = |hash: u128, age_secs: u64, len: usize| {
            let path = dir.path().join(relative_path(hash));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, vec![0; len]).unwrap();
            let when = SystemTime::now() - Duration::from_secs(age_secs);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
            path
        };
        let (old, new) = (7u128 << 120 | 1, 9u128 << 120 | 2);
        place(new, 10, 5000);
        place(old, 1000, 10);
        let old_path = dir.path().join(relative_path(old));
        let stale = old_path.with_file_name(format!("{TEMP_PREFIX}x"));
        std::fs::write(&stale, b"half").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * TEMP_MAX_AGE)
            .unwrap();
        let fresh = old_path.with_file_name(format!("{TEMP_PREFIX}y"));
        std::fs::write(&fresh, b"being written").unwrap();
        let foreign = old_path.with_file_name("notes.txt");
        std::fs::write(&foreign, b"mine").unwrap();

        let mut index = scan(dir.path()).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.bytes(), cost(10) + cost(5000));
        assert_eq!(index.make_room(1, index.bytes()), vec![old]);
        assert!(!stale.exists());
        assert!(fresh.exists() && foreign.exists());
    }
}
