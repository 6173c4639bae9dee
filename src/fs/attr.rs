//! File attributes as the kernel sees them: originals as they are, variants read-only.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

/// st_blksize of variants: a hint to readers (cp, nginx) to read in large chunks.
const VARIANT_BLKSIZE: u32 = 128 * 1024;

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

fn kind(meta: &std::fs::Metadata) -> FileType {
    FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile)
}

/// The source entry's own attributes, inode number aside.
pub fn real(ino: u64, meta: &std::fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: meta.size(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: time(meta.ctime(), meta.ctime_nsec()),
        kind: kind(meta),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: meta.blksize() as u32,
        flags: 0,
    }
}

/// A variant: its source's owner and times, the source's mode without write bits, its
/// exact converted size.
pub fn variant(ino: u64, source: &std::fs::Metadata, size: u64) -> FileAttr {
    FileAttr {
        size,
        blocks: size.div_ceil(512),
        kind: FileType::RegularFile,
        perm: (source.mode() & 0o7555) as u16,
        nlink: 1,
        rdev: 0,
        blksize: VARIANT_BLKSIZE,
        ..real(ino, source)
    }
}
