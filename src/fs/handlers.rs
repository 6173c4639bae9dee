//! The kernel's requests, answered. Anything that writes is EROFS.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;

use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use tracing::info;

use super::inodes::Kind;
use super::names::{self, Resolved};
use super::passthrough::{self, Served};
use super::{attr, ImgFs, OpenFile, Reads};
use crate::error::Error;

/// One entry of a directory snapshot taken at opendir.
pub struct DirEntry {
    name: OsString,
    kind: FileType,
}

pub(super) fn errno(err: &Error) -> Errno {
    Errno::from_i32(err.errno())
}

fn io_errno(err: &io::Error) -> Errno {
    Errno::from_i32(err.raw_os_error().unwrap_or(libc::EIO))
}

impl ImgFs {
    fn real_entry_attr(&self, ino: u64, path: &std::path::Path) -> io::Result<fuser::FileAttr> {
        std::fs::symlink_metadata(self.root.join(path)).map(|meta| attr::real(ino, &meta))
    }

    fn open_real(&self, ino: u64, path: &std::path::Path, reply: ReplyOpen) {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.root.join(path))
        {
            Ok(file) => file,
            Err(err) => return reply.error(io_errno(&err)),
        };
        let backing = self
            .passthrough
            .open(Served::Originals, ino, Some(&file), &reply);
        let fh = self.files.insert(OpenFile {
            ino,
            reads: Reads::Source(Arc::new(file)),
        });
        passthrough::opened(reply, fh, backing.as_deref());
    }

    fn snapshot_dir(&self, path: &std::path::Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = vec![
            DirEntry {
                name: ".".into(),
                kind: FileType::Directory,
            },
            DirEntry {
                name: "..".into(),
                kind: FileType::Directory,
            },
        ];
        for entry in std::fs::read_dir(self.root.join(path))? {
            let entry = entry?;
            let kind = entry
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            entries.push(DirEntry {
                name: entry.file_name(),
                kind,
            });
        }
        Ok(entries)
    }

    fn dir_snapshot(&self, fh: u64) -> Option<Arc<Vec<DirEntry>>> {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
    }

    /// The inode of a directory entry (`.` and `..` map to the directory and its parent).
    fn entry_ino(
        &self,
        dir_ino: u64,
        dir: &std::path::Path,
        entry: &DirEntry,
    ) -> (u64, std::path::PathBuf) {
        match entry.name.as_bytes() {
            b"." => (dir_ino, dir.to_path_buf()),
            b".." => {
                let parent = dir
                    .parent()
                    .unwrap_or(std::path::Path::new(""))
                    .to_path_buf();
                (self.real(&parent), parent)
            }
            _ => {
                let path = dir.join(&entry.name);
                (self.real(&path), path)
            }
        }
    }
}

impl Filesystem for ImgFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for capability in [
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(capability);
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
            self.root.display(),
            crate::cache::MEMORY_FILE_MIN >> 10
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.node(parent.0) else {
            return reply.error(Errno::ENOENT);
        };
        match names::resolve(&self.root, &dir.path, name) {
            Resolved::Real(meta) => {
                let ino = self.real(&dir.path.join(name));
                reply.entry(&self.ttl, &attr::real(ino, &meta), Generation(0));
            }
            Resolved::Variant { source, spec } => {
                self.lookup_variant(parent.0, &dir.path, name, (source, spec), reply)
            }
            Resolved::Missing => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(node) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        match &node.kind {
            Kind::Real => match self.real_entry_attr(ino.0, &node.path) {
                Ok(attr) => reply.attr(&self.ttl, &attr),
                Err(err) => reply.error(io_errno(&err)),
            },
            Kind::Variant(_) => self.getattr_variant(ino.0, node.clone(), reply),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes().forget(ino.0, nlookup);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let Some(node) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        match std::fs::read_link(self.root.join(&node.path)) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(err) => reply.error(io_errno(&err)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) != 0 {
            return reply.error(Errno::EROFS);
        }
        let Some(node) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        match &node.kind {
            Kind::Real => self.open_real(ino.0, &node.path, reply),
            Kind::Variant(_) => self.open_variant(ino.0, node.clone(), reply),
        }
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
        let files = self.files.lock();
        match files.get(&fh.0) {
            Some(OpenFile {
                reads: Reads::Variant(out),
                ..
            }) => {
                let out = out.clone();
                drop(files);
                let bytes = out.bytes();
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size as usize).min(bytes.len());
                reply.data(&bytes[start..end]);
            }
            Some(OpenFile {
                reads: Reads::Source(file),
                ..
            }) => {
                // Shared, not dup'ed: a read is one pread, not three syscalls.
                let file = file.clone();
                drop(files);
                let mut buf = vec![0u8; size as usize];
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read_at(&mut buf[filled..], offset + filled as u64) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => return reply.error(io_errno(&err)),
                    }
                }
                reply.data(&buf[..filled]);
            }
            None => reply.error(Errno::EBADF),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(closed) = self.files.lock().remove(&fh.0) {
            self.passthrough.close(closed.ino);
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

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(node) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if !matches!(node.kind, Kind::Real) {
            return reply.error(Errno::ENOTDIR);
        }
        match self.snapshot_dir(&node.path) {
            Ok(entries) => {
                let fh = self.files.next_number();
                self.dirs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(fh, Arc::new(entries));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(err) => reply.error(io_errno(&err)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (Some(entries), Some(dir)) = (self.dir_snapshot(fh.0), self.node(ino.0)) else {
            return reply.error(Errno::EBADF);
        };
        for (i, entry) in entries.iter().enumerate().skip(offset as usize) {
            let (child, _) = self.entry_ino(ino.0, &dir.path, entry);
            if reply.add(INodeNo(child), (i + 1) as u64, entry.kind, &entry.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (Some(entries), Some(dir)) = (self.dir_snapshot(fh.0), self.node(ino.0)) else {
            return reply.error(Errno::EBADF);
        };
        for (i, entry) in entries.iter().enumerate().skip(offset as usize) {
            let (child, path) = self.entry_ino(ino.0, &dir.path, entry);
            let Ok(attr) = self.real_entry_attr(child, &path) else {
                continue; // vanished since opendir
            };
            if reply.add(
                INodeNo(child),
                (i + 1) as u64,
                &entry.name,
                &self.ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).unwrap_or_default();
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and an out-pointer to a zeroed statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.error(io_errno(&io::Error::last_os_error()));
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }

    // imgfs exposes no extended attributes: ENOSYS makes the kernel answer EOPNOTSUPP by
    // itself from then on, saving two round trips per file of every `ls -l` (ACL and
    // SELinux probes), which measured 0.2 s of 0.36 s for 10,000 files.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }
}
