//! The mount(2) call itself, so that the kernel records the mount as type `fuse.imgfs` with
//! the source directory as its source, as `mount -t fuse.imgfs` and fstab name it. fuser
//! mounts as root with the bare type `fuse` (its subtype reaches only fusermount3), which
//! `findmnt -t fuse.imgfs`, `umount -t` and systemd's fstab matching would not see.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{open, Mode, OFlags};
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// The type the kernel shows: FUSE with imgfs as its subtype.
const FS_TYPE: &str = "fuse.imgfs";

/// What a mount asks of the kernel besides the FUSE device.
pub(super) struct Request<'a> {
    /// Shown as the mount's source (`/proc/mounts`, `findmnt`).
    pub source_name: &'a OsStr,
    pub mountpoint: &'a Path,
    pub allow_other: bool,
    /// `-o` options not known here: FUSE's own (max_read=, blksize=, ...), passed as given.
    pub kernel_options: &'a [String],
    /// Mount flags from `-o` (noexec, noatime, ...), beside the fixed read-only ones.
    pub flags: MountFlags,
}

/// Opens /dev/fuse and mounts it; `None` when the kernel refuses this process (EPERM: not
/// root), so that the caller can go through fusermount3 instead, which sets the same type.
pub(super) fn mount_fuse(request: &Request) -> io::Result<Option<(OwnedFd, Mounted)>> {
    let mountpoint = request.mountpoint.canonicalize()?;
    let root = std::fs::metadata(&mountpoint)?;
    let device = open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={},default_permissions",
        device.as_raw_fd(),
        root.mode() & libc::S_IFMT,
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    if request.allow_other {
        data.push_str(",allow_other");
    }
    for option in request.kernel_options {
        data.push(',');
        data.push_str(option);
    }
    // A mirror of photos needs no device nodes or set-user-ID programs: never honoured.
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | request.flags;
    let data_c = std::ffi::CString::new(data.as_str()).map_err(io::Error::other)?;
    match mount(
        request.source_name,
        &mountpoint,
        FS_TYPE,
        flags,
        data_c.as_c_str(),
    ) {
        Ok(()) => Ok(Some((device, Mounted { mountpoint }))),
        Err(rustix::io::Errno::PERM) => Ok(None),
        Err(e) => Err(io::Error::other(format!(
            "mount({}, type {FS_TYPE}, {data}): {e}",
            mountpoint.display()
        ))),
    }
}

/// The mount point of a mount this process made.
#[derive(Debug, Clone)]
pub(super) struct Mounted {
    mountpoint: PathBuf,
}

impl Mounted {
    pub(super) fn unmount(&self) -> io::Result<()> {
        match unmount(&self.mountpoint, UnmountFlags::empty()) {
            // Already gone (`umount` by someone else): nothing left to do.
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The mount flag an `-o` option names, if it is one the kernel takes as a flag.
pub(super) fn flag(option: &str) -> Option<MountFlags> {
    Some(match option {
        "noexec" => MountFlags::NOEXEC,
        "noatime" => MountFlags::NOATIME,
        "nodiratime" => MountFlags::NODIRATIME,
        "relatime" => MountFlags::RELATIME,
        "strictatime" => MountFlags::STRICTATIME,
        "lazytime" => MountFlags::LAZYTIME,
        "sync" => MountFlags::SYNCHRONOUS,
        "dirsync" => MountFlags::DIRSYNC,
        "silent" => MountFlags::SILENT,
        // The kernel's defaults, or (dev, suid) never honoured here: nothing to set.
        "exec" | "atime" | "async" | "dev" | "suid" | "nodev" | "nosuid" | "loud" => {
            MountFlags::empty()
        }
        _ => return None,
    })
}
