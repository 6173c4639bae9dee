//! The FUSE adapter, the only module that knows fuser: it mounts, turns each kernel
//! request into a call of [`crate::core::ImgFs`] and its answer into a reply, and owns
//! what only the kernel side has: passthrough backing ids and entry invalidations.

mod kernel_mount;
mod mounting;
mod passthrough;

pub use mounting::{mount, Mount, Unmounter};

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags, PollNotifier, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek,
    ReplyOpen, ReplyPoll, ReplyStatfs, ReplyXattr, Request,
};
use tracing::{debug, info, warn};

use crate::core::{Attr, DirReply, ImgFs, Kernel, Listed, OpenFile};
use crate::error::{Errnos, Error, Result};
use crate::source::{Caller, ACCESS_ACL};
use passthrough::{Passthrough, Served};

/// How often notices held for a busy directory are tried again.
const HELD_NOTICE_RETRY: Duration = Duration::from_millis(20);

/// Drops kernel entries on one thread of its own: the kernel may be waiting for the very
/// request that noticed a change (a notice can block until it is answered), so a request
/// thread must not send it, and one thread, not one per notice, bounds the cost. A notice
/// takes its directory's lock, so it would wait for every lookup in flight there and hold
/// the directory's new lookups behind it: a notice for a directory where `busy` says imgfs
/// has lookups in flight is held (the others go on) until the directory is idle, and
/// dropped once `ttl`, the entry timeout, has passed (the kernel then looks the name up
/// again by itself).
struct Invalidator {
    queue: Sender<(u64, OsString)>,
}

impl Invalidator {
    fn start(
        send: impl Fn(u64, &OsStr) + Send + 'static,
        busy: impl Fn(u64) -> bool + Send + 'static,
        ttl: Duration,
    ) -> io::Result<Invalidator> {
        let (queue, entries) = channel::<(u64, OsString)>();
        std::thread::Builder::new()
            .name("invalidate".into())
            .spawn(move || {
                let mut held: Vec<(Instant, u64, OsString)> = Vec::new();
                loop {
                    let next = if held.is_empty() {
                        entries.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    } else {
                        entries.recv_timeout(HELD_NOTICE_RETRY)
                    };
                    match next {
                        Ok((parent, name)) => held.push((Instant::now(), parent, name)),
                        Err(RecvTimeoutError::Timeout) => {}
                        // The mount is gone: nothing is left to tell.
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    held.retain(|(since, parent, name)| {
                        if busy(*parent) {
                            return since.elapsed() < ttl;
                        }
                        send(*parent, name);
                        false
                    });
                }
            })?;
        Ok(Invalidator { queue })
    }
}

impl Kernel for Invalidator {
    fn forget_entry(&self, parent: u64, name: &OsStr) {
        // The thread lives as long as the mount; once it is gone, nothing is left to tell.
        let _ = self.queue.send((parent, name.to_os_string()));
    }
}

/// The fuser side of a mount.
pub struct Fuse {
    fs: Arc<ImgFs>,
    ttl: Duration,
    passthrough_wanted: bool,
    passthrough: Arc<Passthrough>,
    errnos: Errnos,
}

fn errno(err: &Error, errnos: Errnos) -> Errno {
    Errno::from_i32(err.errno_for(errnos))
}

fn caller(req: &Request) -> Caller {
    Caller::new(req.uid(), req.gid(), req.pid())
}

fn time((secs, nanos): (i64, u32)) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            + Duration::from_nanos(u64::from(nanos))
    }
}

fn file_type(kind: rustix::fs::FileType) -> FileType {
    use rustix::fs::FileType as Source;
    match kind {
        Source::Directory => FileType::Directory,
        Source::Symlink => FileType::Symlink,
        Source::Fifo => FileType::NamedPipe,
        Source::CharacterDevice => FileType::CharDevice,
        Source::BlockDevice => FileType::BlockDevice,
        Source::Socket => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// How long the kernel may keep `attr`: the mount's timeout, or not at all if volatile.
fn ttl_of(attr: &Attr, ttl: Duration) -> Duration {
    if attr.volatile {
        Duration::ZERO
    } else {
        ttl
    }
}

fn file_attr(attr: &Attr) -> FileAttr {
    let m = &attr.meta;
    FileAttr {
        ino: INodeNo(attr.ino),
        size: m.size,
        blocks: m.blocks,
        atime: time(m.atime),
        mtime: time(m.mtime),
        ctime: time(m.ctime),
        crtime: time(m.ctime),
        kind: file_type(m.file_type()),
        perm: (m.mode & 0o7777) as u16,
        nlink: m.nlink,
        uid: m.uid,
        gid: m.gid,
        rdev: m.rdev as u32,
        blksize: m.blksize,
        flags: 0,
    }
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for capability in [
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // The kernel judges each file's POSIX ACL too, not its mode bits alone (fourth
            // hostile review of 2026-12-03): it asks getxattr for it.
            InitFlags::FUSE_POSIX_ACL,
        ] {
            if config.add_capabilities(capability).is_err()
                && capability == InitFlags::FUSE_POSIX_ACL
            {
                warn!("this kernel judges no POSIX ACLs on FUSE mounts: only the mode bits count");
            }
        }
        if self.passthrough_wanted
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough.enable();
        }
        let on = self.passthrough.is_on(Served::Originals);
        info!(
            "mounted {} (passthrough for originals: {on}, for variants from {} KiB: {on})",
            self.fs.root().path().display(),
            crate::cache::MEMORY_FILE_MIN >> 10
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let errnos = self.errnos;
        let ttl = self.ttl;
        self.fs
            .lookup(&caller(req), parent.0, name, move |result| match result {
                Ok(attr) => reply.entry(&ttl_of(&attr, ttl), &file_attr(&attr), Generation(0)),
                Err(err) => reply.error(errno(&err, errnos)),
            });
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let errnos = self.errnos;
        let ttl = self.ttl;
        self.fs
            .getattr(&caller(req), ino.0, move |result| match result {
                Ok(attr) => reply.attr(&ttl_of(&attr, ttl), &file_attr(&attr)),
                Err(err) => reply.error(errno(&err, errnos)),
            });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let errnos = self.errnos;
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(err) => reply.error(errno(&err, errnos)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let errnos = self.errnos;
        if flags.0 & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0 {
            return reply.error(Errno::EROFS);
        }
        let passthrough = self.passthrough.clone();
        self.fs
            .open(&caller(req), ino.0, move |result| match result {
                Ok((fh, file)) => {
                    let served = match file {
                        OpenFile::Source(_) => Served::Originals,
                        OpenFile::Variant(_) => Served::Variants,
                        OpenFile::Snapshot(_) => {
                            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO)
                        }
                    };
                    let backing = passthrough.open(served, ino.0, file.backing_file(), &reply);
                    passthrough::opened(reply, fh, backing.as_deref());
                }
                Err(err) => reply.error(errno(&err, errnos)),
            });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let errnos = self.errnos;
        match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(data.bytes()),
            Err(err) => reply.error(errno(&err, errnos)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if self.fs.release(fh.0).is_some() {
            self.passthrough.close(ino.0);
        }
        reply.ok();
    }

    /// Nothing to flush on a read-only mount. ENOSYS (not ok) makes the kernel stop sending
    /// FLUSH at all: one round trip fewer on every close, as with the xattr requests.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let errnos = self.errnos;
        match self.fs.opendir(&caller(req), ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(err) => reply.error(errno(&err, errnos)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let listing = Listing {
            reply,
            errnos: self.errnos,
        };
        self.fs
            .readdir(&caller(req), ino.0, fh.0, offset, false, listing);
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let listing = ListingPlus {
            reply,
            errnos: self.errnos,
            ttl: self.ttl,
        };
        self.fs
            .readdir(&caller(req), ino.0, fh.0, offset, true, listing);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let errnos = self.errnos;
        match self.fs.statfs() {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                st.f_bsize as u32,
                st.f_namemax as u32,
                st.f_frsize as u32,
            ),
            Err(err) => {
                debug!("statfs: {err}");
                reply.error(errno(&err, errnos))
            }
        }
    }

    /// The one extended attribute imgfs shows is each file's POSIX access ACL, which the
    /// kernel asks for to judge a caller who is not the owner (`FUSE_POSIX_ACL`; it keeps
    /// the answer as long as the attributes). Every other name has no value.
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if name != ACCESS_ACL {
            return reply.error(Errno::ENODATA);
        }
        match self.fs.access_acl(ino.0) {
            Ok(None) => reply.error(Errno::ENODATA),
            Ok(Some(acl)) if size == 0 => reply.size(acl.len() as u32),
            Ok(Some(acl)) if acl.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(Some(acl)) => reply.data(&acl),
            Err(err) => reply.error(errno(&err, self.errnos)),
        }
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    // What fuser would answer for the requests below, but without its warning per request:
    // any user may send them (python's `open` asks isatty, `cp` seeks for holes), so each
    // would be a log line an unprivileged caller could repeat at will.

    /// No file here is a terminal or a device: ENOTTY, as a regular file answers.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// Nothing is ever written: ENOSYS makes the kernel report success from then on.
    fn fsync(&self, _: &Request, _: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn fsyncdir(&self, _: &Request, _: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    /// ENOSYS: the kernel answers polls itself (always readable) from then on.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// ENOSYS: the kernel seeks by itself (no holes: SEEK_DATA is the offset, SEEK_HOLE the end).
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }
}

/// A READDIR reply as the core fills it.
struct Listing {
    reply: ReplyDirectory,
    errnos: Errnos,
}

impl DirReply for Listing {
    fn add(&mut self, listed: Listed<'_>) -> bool {
        let kind = file_type(listed.entry.kind);
        self.reply
            .add(INodeNo(listed.ino), listed.next, kind, &listed.entry.name)
    }

    fn done(self, result: Result<()>) {
        match result {
            Ok(()) => self.reply.ok(),
            Err(err) => self.reply.error(errno(&err, self.errnos)),
        }
    }
}

/// A READDIRPLUS reply as the core fills it: entries with their attributes.
struct ListingPlus {
    reply: ReplyDirectoryPlus,
    errnos: Errnos,
    ttl: Duration,
}

impl DirReply for ListingPlus {
    fn add(&mut self, listed: Listed<'_>) -> bool {
        let Some(attr) = listed.attr else {
            return false;
        };
        self.reply.add(
            INodeNo(listed.ino),
            listed.next,
            &listed.entry.name,
            &ttl_of(&attr, self.ttl),
            &file_attr(&attr),
            Generation(0),
        )
    }

    fn done(self, result: Result<()>) {
        match result {
            Ok(()) => self.reply.ok(),
            Err(err) => self.reply.error(errno(&err, self.errnos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn notices_go_out_one_at_a_time_from_one_thread() {
        // Issue 11, defect 4: a thread per outdated inode grew without bound while the
        // kernel held the notices back.
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (done, delivered) = channel();
        let (r, m) = (running.clone(), most.clone());
        let invalidator = Invalidator::start(
            move |parent, _name: &OsStr| {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2)); // the kernel taking its time
                r.fetch_sub(1, Ordering::SeqCst);
                done.send(parent).unwrap();
            },
            |_| false,
            Duration::from_secs(1),
        )
        .unwrap();
        for parent in 0..50 {
            invalidator.forget_entry(parent, OsStr::new("a.jpg@format,png"));
        }
        let order: Vec<u64> = (0..50)
            .map(|_| delivered.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    /// Fourth hostile review of 2026-12-03: a notice waits for every lookup in flight in its
    /// directory (each one a conversion) and holds the directory's new lookups behind it.
    /// It is held while imgfs has lookups there, others go out meanwhile, and one held past
    /// the entry timeout is dropped.
    #[test]
    fn a_notice_for_a_directory_with_lookups_in_flight_waits_and_others_go_on() {
        use std::sync::atomic::AtomicBool;
        let (busy_1, busy_9) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(true)),
        );
        let (done, delivered) = channel();
        let (b1, b9) = (busy_1.clone(), busy_9.clone());
        let invalidator = Invalidator::start(
            move |parent, _name: &OsStr| done.send(parent).unwrap(),
            move |dir| match dir {
                1 => b1.load(Ordering::SeqCst),
                9 => b9.load(Ordering::SeqCst),
                _ => false,
            },
            Duration::from_millis(300),
        )
        .unwrap();
        let next = || delivered.recv_timeout(Duration::from_secs(10)).unwrap();
        invalidator.forget_entry(9, OsStr::new("never.jpg@format,png"));
        invalidator.forget_entry(1, OsStr::new("a.jpg@format,png"));
        invalidator.forget_entry(2, OsStr::new("b.jpg@format,png"));
        assert_eq!(next(), 2, "an idle directory's notice does not wait");
        busy_1.store(false, Ordering::SeqCst);
        assert_eq!(next(), 1, "sent once the directory is idle");
        // 9 stays busy past the entry timeout: its notice is dropped, not sent later.
        std::thread::sleep(Duration::from_millis(400));
        busy_9.store(false, Ordering::SeqCst);
        invalidator.forget_entry(3, OsStr::new("c.jpg@format,png"));
        assert_eq!(next(), 3);
        assert!(delivered.recv_timeout(Duration::from_millis(100)).is_err());
    }
}
