//! Making a mount and ending it: `-o` options sorted into what fuser, the kernel's flags
//! and FUSE's own options take, the mount itself (see `kernel_mount`), and the handle
//! that unmounts it.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;

use fuser::{Config, INodeNo, MountOption, Session, SessionACL};

use super::{kernel_mount, Fuse, Invalidator};
use crate::core::ImgFs;
use crate::options::MountOptions;
use crate::pipeline::Settings;
use crate::spec::Styles;

/// A mount ready to run, and the filesystem behind it (for its cache and statistics).
pub struct Mount {
    pub session: Session<Fuse>,
    pub fs: Arc<ImgFs>,
    /// Ends the mount from any thread (a signal handler's, a test's).
    pub unmounter: Unmounter,
}

/// Unmounts a mount, whichever way it was made.
pub struct Unmounter(UnmountBy);

enum UnmountBy {
    /// Mounted by this process's own mount(2).
    Kernel(kernel_mount::Mounted),
    /// Mounted by fuser (through fusermount3 when not root).
    Fuser(fuser::SessionUnmounter),
}

impl Unmounter {
    /// Unmounts; fails (EBUSY) while files on the mount are open.
    pub fn unmount(&mut self) -> io::Result<()> {
        match &mut self.0 {
            UnmountBy::Kernel(mounted) => mounted.unmount(),
            UnmountBy::Fuser(unmounter) => unmounter.unmount(),
        }
    }
}

/// Mounts `source` at `mountpoint` as type `fuse.imgfs` with the source's path as the
/// mount's source; the caller runs (or spawns) the session.
pub fn mount(
    source: &Path,
    mountpoint: &Path,
    settings: Settings,
    styles: Styles,
    options: &MountOptions,
) -> io::Result<Mount> {
    // Mounted below its own source, every walk of the tree would enter the mount again, each
    // level holding a request thread of the mount itself, until none is left. Over the
    // source itself is fine: the source is opened before the mount covers it.
    let inside = match mountpoint.canonicalize() {
        Ok(at) => match at.parent() {
            Some(parent) => crate::source::within(parent, source)?,
            None => None,
        },
        Err(_) => None, // no mountpoint: the mount itself says so
    };
    if let Some(at) = inside {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the mountpoint is inside the source directory (at {}): imgfs would serve \
                 its own mount; choose a mountpoint outside it (or the source itself)",
                at.display()
            ),
        ));
    }
    let fs = ImgFs::new(source, settings, styles, options)?;
    let source_name = fs.root().path().as_os_str().to_os_string();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::DefaultPermissions,
        MountOption::FSName(source_name.to_string_lossy().into_owned()),
        MountOption::Subtype("imgfs".into()),
    ];
    let (mut kernel_options, mut flags) = (Vec::new(), rustix::mount::MountFlags::empty());
    // The same options as fusermount3 reads them, for a mount without root.
    let mut as_text = Vec::new();
    for option in options.options.iter().filter(|o| !o.is_empty()) {
        match option.as_str() {
            "allow_other" => config.acl = SessionACL::All,
            "allow_root" => config.acl = SessionACL::RootAndOwner,
            "ro" | "default_permissions" => {}
            "rw" => return Err(io::Error::other("imgfs is read-only: -o rw refused")),
            other => {
                match kernel_mount::flag(other) {
                    Some(flag) if flag.is_empty() => continue,
                    Some(flag) => flags |= flag,
                    None => kernel_options.push(other.to_string()),
                }
                as_text.push(MountOption::CUSTOM(other.to_string()));
            }
        }
    }
    config.n_threads = Some(options.fuse_threads.max(1));
    config.clone_fd = true;
    let adapter = Fuse {
        fs: fs.clone(),
        ttl: options.attr_ttl,
        passthrough_wanted: options.passthrough,
        passthrough: Arc::default(),
        errnos: options.errors,
    };
    let request = kernel_mount::Request {
        source_name: &source_name,
        mountpoint,
        // allow_root is allow_other to the kernel; fuser refuses other users' requests.
        allow_other: config.acl != SessionACL::Owner,
        kernel_options: &kernel_options,
        flags,
    };
    let (session, unmounter) = match kernel_mount::mount_fuse(&request)? {
        Some((device, mounted)) => {
            let acl = config.acl;
            match Session::from_fd(adapter, device, acl, config) {
                Ok(session) => (session, UnmountBy::Kernel(mounted)),
                Err(e) => {
                    let _ = mounted.unmount();
                    return Err(e);
                }
            }
        }
        None => {
            // Not root: fuser goes through fusermount3, which takes every option as text.
            config.mount_options.extend(as_text);
            let mut session = Session::new(adapter, mountpoint, &config)?;
            let unmounter = session.unmount_callable();
            (session, UnmountBy::Fuser(unmounter))
        }
    };
    let notifier = session.notifier();
    let watched = Arc::downgrade(&fs);
    let invalidator = Invalidator::start(
        move |parent, name: &OsStr| {
            let _ = notifier.inval_entry(INodeNo(parent), name);
        },
        move |dir| watched.upgrade().is_some_and(|fs| fs.looking_up_in(dir)),
        options.attr_ttl,
    )?;
    fs.set_kernel(Arc::new(invalidator));
    Ok(Mount {
        session,
        fs,
        unmounter: Unmounter(unmounter),
    })
}
