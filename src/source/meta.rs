//! A file's status as imgfs uses it, and its identity (what makes a version of it).

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType, Stat, StatxFlags};

/// The fields of `struct stat` that imgfs reports or compares, arch-independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u32,
    pub blocks: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    /// Birth time, (0, 0) where the file system does not keep one: no user can set it, and
    /// a new file on a reused inode number gets a new one.
    pub btime: (i64, u32),
}

impl Meta {
    /// The status of the file `fd` is open on, birth time included (statx).
    pub fn of(fd: impl AsFd) -> rustix::io::Result<Meta> {
        let st = rustix::fs::statx(
            fd,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::BASIC_STATS | StatxFlags::BTIME,
        )?;
        let time = |t: rustix::fs::StatxTimestamp| (t.tv_sec, t.tv_nsec);
        let btime = if st.stx_mask & StatxFlags::BTIME.bits() != 0 {
            time(st.stx_btime)
        } else {
            (0, 0)
        };
        Ok(Meta {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            mode: u32::from(st.stx_mode),
            nlink: st.stx_nlink,
            uid: st.stx_uid,
            gid: st.stx_gid,
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
            size: st.stx_size,
            blksize: st.stx_blksize,
            blocks: st.stx_blocks,
            atime: time(st.stx_atime),
            mtime: time(st.stx_mtime),
            ctime: time(st.stx_ctime),
            btime,
        })
    }

    // The casts widen or reinterpret `struct stat`'s per-arch integer types.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub fn from_stat(st: &Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: st.st_size as u64,
            blksize: st.st_blksize as u32,
            blocks: st.st_blocks as u64,
            atime: (st.st_atime as i64, st.st_atime_nsec as u32),
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as u32),
            btime: (0, 0),
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::RegularFile
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }

    pub fn identity(&self) -> Identity {
        Identity {
            dev: self.dev,
            ino: self.ino,
            size: self.size,
            mtime_ns: ns(self.mtime),
            birth_ns: ns(if self.btime != (0, 0) {
                self.btime
            } else {
                self.ctime
            }),
        }
    }
}

#[cfg(test)]
impl Meta {
    /// A status for tests: `mode` (type bits included), owner and group; the rest plain.
    pub fn example(mode: u32, uid: u32, gid: u32) -> Meta {
        Meta {
            dev: 1,
            ino: 2,
            mode,
            nlink: 1,
            uid,
            gid,
            rdev: 0,
            size: 0,
            blksize: 4096,
            blocks: 0,
            atime: (0, 0),
            mtime: (0, 0),
            ctime: (0, 0),
            btime: (0, 0),
        }
    }
}

fn ns((secs, nanos): (i64, u32)) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nanos)
}

/// One file's identity: when any of it changes, what was made from the file is stale.
/// Size and mtime can be set by the file's owner, and inode numbers are reused: the birth
/// time (which nobody can set) tells a new file on an old number from the old file, so a
/// file made to look like another user's cannot be served that user's variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    /// The birth time; where the file system keeps none (ext4 with 128-byte inodes, NFSv3,
    /// FAT), the last status change (ctime), which nobody can set either and which a new
    /// file gets anew, though a `chmod`, `chown`, link or rename also moves it.
    pub birth_ns: i128,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_on_a_reused_inode_with_the_old_size_and_mtime_is_another_identity() {
        // Hostile review of 2026-12-03: the identity was (device, inode, size, mtime), all
        // of which the owner of a new file can match once a victim's file is deleted (its
        // inode number is often reused at once), so the victim's cached variants were served
        // for it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jpg");
        let meta = || Meta::of(std::fs::File::open(&path).unwrap()).unwrap();
        let identity = || meta().identity();
        std::fs::write(&path, b"victim").unwrap();
        // Birth times here; their absence is the ext4 test of `tests/it/users.rs`.
        assert_ne!(meta().btime, (0, 0), "this file system keeps birth times");
        let victim = identity();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        for _ in 0..100 {
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, b"forged").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(mtime).unwrap();
            drop(file);
            let forged = identity();
            if forged.ino == victim.ino {
                assert_eq!(
                    (forged.size, forged.mtime_ns),
                    (victim.size, victim.mtime_ns)
                );
                assert_ne!(forged, victim, "the forged file passes for the victim's");
                return;
            }
        }
        panic!("no inode number was reused in 100 tries: nothing was shown");
    }

    #[test]
    fn without_a_birth_time_the_change_time_tells_a_new_file_on_a_reused_inode_from_the_old() {
        // Third hostile review of 2026-12-03: on file systems without birth times the
        // identity was (device, inode, size, mtime), all of which a new file's owner sets.
        let mut old = Meta::example(0o100_644, 1001, 1001);
        (old.ino, old.size, old.mtime, old.ctime) =
            (13, 100, (1_700_000_000, 0), (1_700_000_000, 0));
        let forged = Meta {
            uid: 65534,
            ctime: (1_700_000_090, 0),
            ..old
        };
        assert_ne!(old.identity(), forged.identity());
        // Where the birth time is kept, a status change alone (chmod) is the same file.
        let born = Meta {
            btime: (1_600_000_000, 0),
            ..old
        };
        let chmodded = Meta {
            ctime: (1_700_000_100, 0),
            ..born
        };
        assert_eq!(born.identity(), chmodded.identity());
    }
}
