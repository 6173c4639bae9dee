//! The mount's own files: `.imgfs/` in the root, holding `metrics` (the Prometheus text
//! format). Not listed by the root's readdir, and a real `.imgfs` in the source wins, as
//! real names always do (docs/filesystem.md, "Names").
//!
//! A generated file has no fixed size, yet readers such as nginx take the size from stat
//! and send exactly that many bytes. So each rendering is a snapshot, made at most once a
//! second: an open pins the current one, a stat reports the size of the current one, and
//! the attributes are volatile (the kernel keeps none), so open then fstat agree.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::FileType;

use super::handles::Listing;
use super::{Attr, DirEntry, ImgFs, OpenFile};
use crate::cache::{Converted, Stored};
use crate::error::{Error, Result};
use crate::source::Meta;

/// The name of the mount's own directory in the root.
pub const OWN_DIR: &str = ".imgfs";

/// How long one rendering of a generated file is served.
const SNAPSHOT_LIFE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnFile {
    /// `.imgfs/` itself.
    Dir,
    /// `.imgfs/metrics`.
    Metrics,
}

impl OwnFile {
    /// The files of `.imgfs/`, as readdir lists them.
    pub const LISTED: [(&'static str, OwnFile); 1] = [("metrics", OwnFile::Metrics)];

    /// The entry `name` of the own directory.
    pub fn named(name: &OsStr) -> Option<OwnFile> {
        OwnFile::LISTED
            .iter()
            .find(|(listed, _)| OsStr::new(listed) == name)
            .map(|(_, own)| *own)
    }
}

/// The current rendering of the metrics file.
#[derive(Default)]
pub struct Snapshots {
    metrics: Mutex<Option<(Instant, SystemTime, Converted)>>,
}

impl ImgFs {
    /// The metrics as of at most a second ago, and when they were rendered.
    fn metrics_snapshot(&self) -> (SystemTime, Converted) {
        let mut current = self
            .snapshots
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match &*current {
            Some((made, at, bytes)) if made.elapsed() < SNAPSHOT_LIFE => (*at, bytes.clone()),
            _ => {
                let text = self.converter.metrics_text().into_bytes();
                let bytes: Converted = Arc::new(Stored::Heap(text));
                let at = SystemTime::now();
                *current = Some((Instant::now(), at, bytes.clone()));
                (at, bytes)
            }
        }
    }

    /// What stat shows for `own` as inode `ino`: owned like the root, read-only for all.
    pub(super) fn own_attr(&self, ino: u64, own: OwnFile) -> Result<Attr> {
        let root = self.root.entry(std::path::Path::new(""))?.meta;
        let meta = match own {
            OwnFile::Dir => Meta {
                mode: libc::S_IFDIR | 0o555,
                nlink: 2,
                ..root
            },
            OwnFile::Metrics => {
                let (at, bytes) = self.metrics_snapshot();
                let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
                let time = (since.as_secs() as i64, since.subsec_nanos());
                Meta {
                    mode: libc::S_IFREG | 0o444,
                    nlink: 1,
                    size: bytes.len(),
                    blocks: bytes.len().div_ceil(512),
                    mtime: time,
                    ctime: time,
                    atime: time,
                    rdev: 0,
                    ..root
                }
            }
        };
        Ok(Attr {
            ino,
            meta,
            volatile: own != OwnFile::Dir,
        })
    }

    /// LOOKUP of `name` in the own directory.
    pub(super) fn lookup_own(&self, name: &OsStr) -> Result<Attr> {
        let own = OwnFile::named(name)
            .ok_or_else(|| Error::NotFound(format!("{OWN_DIR}/{}", name.to_string_lossy())))?;
        let path = std::path::Path::new(OWN_DIR).join(name);
        let ino = self.inodes().look_up_own(&path, own);
        self.own_attr(ino, own)
    }

    /// OPENDIR of the own directory: `.`, `..` and its files.
    pub(super) fn own_listing(&self, uid: u32) -> Result<Listing> {
        let meta = self.own_attr(0, OwnFile::Dir)?.meta;
        let entry = |name: &str, kind, own: OwnFile| DirEntry {
            name: name.into(),
            kind,
            source_ino: u64::MAX - own as u64,
            source: None,
        };
        let mut entries = vec![
            entry(".", FileType::Directory, OwnFile::Dir),
            entry("..", FileType::Directory, OwnFile::Dir),
        ];
        for (name, own) in OwnFile::LISTED {
            entries.push(entry(name, FileType::RegularFile, own));
        }
        let mut charge = self.handles.charge(uid);
        charge.add_all(&entries, Path::new(OWN_DIR))?;
        Ok(Listing {
            dir: None,
            meta,
            entries,
            view: false,
            _charge: charge,
        })
    }

    /// OPEN of an own file: the current snapshot, pinned until release.
    pub(super) fn open_own(&self, uid: u32, own: OwnFile) -> Result<(u64, OpenFile)> {
        match own {
            OwnFile::Metrics => self.opened(uid, OpenFile::Snapshot(self.metrics_snapshot().1)),
            OwnFile::Dir => Err(Error::NotFound(format!("{OWN_DIR}: a directory"))),
        }
    }
}
