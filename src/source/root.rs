//! The root directory and the only ways into it. Entries of the mirrored tree are opened
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: a symlink anywhere on the path,
//! a `..` that climbs out or a magic link fails, so a directory swapped for a link is not
//! followed. Files a variant reads (its source, which may be an in-root symlink, and
//! watermark images) are found by [`Root::resolve`], a walk of one `O_NOFOLLOW` open per
//! component from the root's descriptor that follows only links staying inside and judges
//! the caller at every directory, as path resolution through the mount would.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{openat, openat2, Mode, OFlags, ResolveFlags};

use super::access::{Caller, READ, SEARCH};
use super::Meta;
use crate::error::{Error, Result};

/// Symlinks followed in one resolution before giving up (the kernel's MAXSYMLINKS).
const MAX_LINKS: u32 = 40;

/// Which symlinks [`Root::resolve`] follows (always only while they stay inside the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// The last component may be a link (a variant's source); directories on the path
    /// as named must be real, while the link's target may pass through further links.
    Last,
    /// Any component (a watermark image named relative to the root).
    All,
}

/// An entry found inside the root: held by an `O_PATH` descriptor, so what is opened
/// later is this very file, whatever has been renamed or swapped since.
#[derive(Debug)]
pub struct Found {
    fd: OwnedFd,
    pub meta: Meta,
}

impl Found {
    fn of(fd: OwnedFd) -> Result<Found> {
        let meta = Meta::of(&fd).map_err(|e| Error::io("statx", e.into()))?;
        Ok(Found { fd, meta })
    }

    /// A file named at the command line, links followed (the person's own choice).
    pub fn at(path: &Path) -> Result<Found> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::io(path.display(), e.into()))?;
        Found::of(fd)
    }

    /// Opens this regular file for reading. Anything else (a FIFO, a device, a
    /// directory) is "not found": opening it could block a worker forever or have side
    /// effects. The open goes through the descriptor's /proc link, which names this inode
    /// itself, so no file swapped in since the lookup can take its place.
    pub fn open(&self, name: &Path) -> Result<File> {
        if !self.meta.is_file() {
            return Err(Error::NotFound(format!(
                "{}: not a regular file",
                name.display()
            )));
        }
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        Ok(File::from(self.reopen(name, flags)?))
    }

    /// Opens this directory for listing, through the descriptor's /proc link as
    /// [`Found::open`] does.
    pub fn open_dir(&self, name: &Path) -> Result<OwnedFd> {
        if !self.meta.is_dir() {
            return Err(Error::NotFound(format!(
                "{}: not a directory",
                name.display()
            )));
        }
        self.reopen(name, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// This very inode opened with `flags`, through the descriptor's /proc link.
    fn reopen(&self, name: &Path, flags: OFlags) -> Result<OwnedFd> {
        let link = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        rustix::fs::open(link.as_str(), flags | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::io(name.display(), e.into()))
    }

    /// The entry `name` of this directory as it is (no link followed). `name` is one
    /// component: `..` or a `/` cannot leave the directory. `relative` names it in messages.
    pub fn child(&self, name: &OsStr, relative: &Path) -> Result<Found> {
        Found::in_dir(&self.fd, name, relative)
    }

    /// The entry `name` of the directory open at `dir`, as [`Found::child`] finds it.
    pub fn in_dir(dir: impl AsFd, name: &OsStr, relative: &Path) -> Result<Found> {
        openat2(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| not_found_if_unreachable(relative, e.into()))
        .and_then(Found::of)
    }

    /// This file's POSIX access ACL, if it has one.
    pub fn access_acl(&self) -> std::io::Result<Option<Vec<u8>>> {
        super::acl::read(&self.fd)
    }

    /// The target of this symlink.
    pub fn read_link(&self, name: &Path) -> Result<PathBuf> {
        let target = rustix::fs::readlinkat(&self.fd, "", Vec::new())
            .map_err(|e| Error::io(name.display(), e.into()))?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }
}

/// The subdirectory `name` (one component) of the directory open at `dir`, opened for
/// listing relative to it, as the root opens what it mirrors ([`confined`]): however long
/// the path from the root, and a directory swapped for a symlink is refused (ENOTDIR), not
/// followed.
pub fn open_subdir(dir: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    confined(dir, name, OFlags::RDONLY | OFlags::DIRECTORY)
}

/// `relative` opened with `flags` beneath the directory open at `dir`: no symlink followed
/// on the way or at the end, nothing outside it reached.
fn confined(
    dir: impl AsFd,
    relative: impl rustix::path::Arg,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    openat2(
        dir,
        relative,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Directories walked to from the root ([`Root::walk_to`]): the last is the one reached.
pub struct Walked {
    dirs: Vec<Rc<Found>>,
}

impl Walked {
    /// The directory walked to.
    pub fn dir(&self) -> &Found {
        self.dirs.last().expect("the root is never popped")
    }
}

/// One step of a walk: `name` in `dir`, which `caller` must be allowed to search, opened
/// without following it. `relative` names the whole path in messages.
fn step(dir: &Found, name: &OsStr, relative: &Path, caller: &Caller) -> Result<Found> {
    #[cfg(test)]
    STEPS.with(|steps| steps.set(steps.get() + 1));
    if !caller.may(dir, SEARCH) {
        return Err(denied_search(relative));
    }
    let fd = openat(
        &dir.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| not_found_if_unreachable(relative, e.into()))?;
    Found::of(fd)
}

#[cfg(test)]
thread_local! {
    /// The steps this thread's walks took (tests count them).
    pub static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn denied_search(relative: &Path) -> Error {
    Error::Denied(format!(
        "{}: a directory on the way may not be searched",
        relative.display()
    ))
}

/// The source root, held open for the life of the mount.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    /// Canonical, to read absolute symlinks that point inside and for messages.
    path: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let path = path.canonicalize()?;
        let dir = rustix::fs::open(
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { dir, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An entry of the mirrored tree as it is (its lstat): no symlink is followed, on
    /// the path or at its end. Whatever fails (gone, a link on the path, out of the root)
    /// is "not found".
    pub fn entry(&self, relative: &Path) -> Result<Found> {
        self.open_beneath(relative, OFlags::PATH)
            .and_then(Found::of)
    }

    /// A directory of the mirrored tree, opened for listing.
    pub fn open_dir(&self, relative: &Path) -> Result<OwnedFd> {
        self.open_beneath(relative, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    fn open_beneath(&self, relative: &Path, flags: OFlags) -> Result<OwnedFd> {
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        confined(&self.dir, relative, flags)
            .map_err(|e| not_found_if_unreachable(relative, e.into()))
    }

    /// The file `relative` names, following the symlinks `links` allows while they stay
    /// inside the root, for `caller` to read: every directory on the way must be
    /// searchable and the file readable by them (checked before the next step, so an
    /// answer never depends on what a directory they may not search holds). A path that
    /// leaves the root, or loops, is "not found".
    pub fn resolve(&self, relative: &Path, links: Links, caller: &Caller) -> Result<Found> {
        let dirs = vec![Rc::new(self.root_found()?)];
        self.walk(dirs, components(relative)?, relative, links, caller)
    }

    /// The directory `dir` (real directories all the way, no link followed), walked to
    /// once for `caller`, so that [`Root::resolve_in`] resolves many names in it without
    /// walking the path again: a name with many `@` has as many candidate sources.
    pub fn walk_to(&self, dir: &Path, caller: &Caller) -> Result<Walked> {
        let mut dirs = vec![Rc::new(self.root_found()?)];
        for name in components(dir)? {
            let here = dirs.last().expect("the root is never popped");
            let found = match name.as_bytes() {
                b".." => Err(outside(dir)),
                _ => step(here, &name, dir, caller),
            }?;
            if !found.meta.is_dir() {
                return Err(Error::NotFound(format!(
                    "{}: not a directory on the way",
                    dir.display()
                )));
            }
            dirs.push(Rc::new(found));
        }
        Ok(Walked { dirs })
    }

    /// [`Root::walk_to`] `dir`, on which `caller` must also have the rights `want` (READ
    /// to list it, SEARCH to look a name up in it).
    pub fn walk_into(&self, dir: &Path, want: u32, caller: &Caller) -> Result<Walked> {
        let walked = self.walk_to(dir, caller)?;
        if !caller.may(walked.dir(), want) {
            return Err(Error::Denied(format!(
                "{}: may not be {}",
                dir.display(),
                if want == READ { "listed" } else { "searched" }
            )));
        }
        Ok(walked)
    }

    /// [`Root::resolve`] of `name` in the directory `walked` to; `relative` (its path from
    /// the root) names it in messages.
    pub fn resolve_in(
        &self,
        walked: &Walked,
        name: &OsStr,
        relative: &Path,
        links: Links,
        caller: &Caller,
    ) -> Result<Found> {
        let todo = VecDeque::from([name.to_os_string()]);
        self.walk(walked.dirs.clone(), todo, relative, links, caller)
    }

    /// Resolves the path `todo` from the directories `dirs` (the last is where it starts,
    /// the others where `..` climbs back to); `relative` names it in messages.
    fn walk(
        &self,
        mut dirs: Vec<Rc<Found>>,
        mut todo: VecDeque<OsString>,
        relative: &Path,
        links: Links,
        caller: &Caller,
    ) -> Result<Found> {
        let mut follow_all = links == Links::All;
        let mut followed = 0;
        loop {
            let dir = dirs.last().expect("the root is never popped");
            let Some(name) = todo.pop_front() else {
                return Err(Error::NotFound(format!(
                    "{}: a directory",
                    relative.display()
                )));
            };
            if name == ".." {
                if !caller.may(dir, SEARCH) {
                    return Err(denied_search(relative));
                }
                if dirs.len() == 1 {
                    return Err(outside(relative));
                }
                dirs.pop();
                continue;
            }
            let found = step(dir, &name, relative, caller)?;
            let last = todo.is_empty();
            if found.meta.is_symlink() && (follow_all || last) {
                followed += 1;
                if followed > MAX_LINKS {
                    return Err(Error::NotFound(format!(
                        "{}: too many levels of symbolic links",
                        relative.display()
                    )));
                }
                let target = found.read_link(relative)?;
                let target = if target.is_absolute() {
                    // An absolute link may still point inside: walk it from the root.
                    let inside = target
                        .strip_prefix(&self.path)
                        .map_err(|_| outside(relative))?;
                    dirs.truncate(1);
                    inside.to_path_buf()
                } else {
                    target
                };
                let mut next = components(&target)?;
                next.extend(todo);
                todo = next;
                follow_all = true;
                continue;
            }
            if last {
                if !caller.may(&found, READ) {
                    return Err(Error::Denied(format!(
                        "{}: may not be read",
                        relative.display()
                    )));
                }
                return Ok(found);
            }
            if !found.meta.is_dir() {
                return Err(Error::NotFound(format!(
                    "{}: not a directory on the way",
                    relative.display()
                )));
            }
            dirs.push(Rc::new(found));
        }
    }

    fn root_found(&self) -> Result<Found> {
        let fd = self
            .dir
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io(self.path.display(), e))?;
        Found::of(fd)
    }

    /// The file system's statistics (statfs of the mount).
    pub fn statvfs(&self) -> std::io::Result<rustix::fs::StatVfs> {
        Ok(rustix::fs::fstatvfs(&self.dir)?)
    }
}

/// The parts of a relative path: names and `..`; an absolute path is refused.
fn components(path: &Path) -> Result<VecDeque<OsString>> {
    let mut parts = VecDeque::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push_back(name.to_os_string()),
            Component::ParentDir => parts.push_back("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(outside(path)),
        }
    }
    Ok(parts)
}

fn outside(path: &Path) -> Error {
    Error::NotFound(format!("{}: leads outside the source root", path.display()))
}

/// Errors that mean "no such entry reachable from here": a link where none may be
/// (ELOOP), a path that leaves the root (EXDEV), a file where a directory was expected.
fn not_found_if_unreachable(path: &Path, err: std::io::Error) -> Error {
    match err.raw_os_error() {
        Some(libc::ELOOP) => {
            Error::NotFound(format!("{}: a symbolic link on the way", path.display()))
        }
        Some(libc::EXDEV) => outside(path),
        Some(libc::ENOTDIR) => {
            Error::NotFound(format!("{}: not a directory on the way", path.display()))
        }
        _ => Error::io(path.display(), err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("d/a.txt"), b"a").unwrap();
        std::fs::write(root.join("d/e/b.txt"), b"b").unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.txt"), b"secret").unwrap();
        let opened = Root::open(&root).unwrap();
        (dir, opened)
    }

    fn read(found: &Found) -> Vec<u8> {
        use std::io::Read;
        let mut bytes = Vec::new();
        found
            .open(Path::new("x"))
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    }

    #[test]
    fn a_directory_swapped_for_a_link_out_of_the_root_is_not_followed() {
        let (dir, root) = tree();
        assert!(root.entry(Path::new("d/a.txt")).is_ok());
        let d = root.path().join("d");
        std::fs::rename(&d, dir.path().join("d-moved")).unwrap();
        symlink(dir.path().join("outside"), &d).unwrap();
        for path in ["d/secret.txt", "d"] {
            let found = root.entry(Path::new(path));
            match path {
                // The link itself is an entry of the tree, shown as a link.
                "d" => assert!(found.unwrap().meta.is_symlink()),
                _ => assert_eq!(found.unwrap_err().errno(), libc::ENOENT, "{path}"),
            }
        }
        let caller = Caller::root();
        for links in [Links::Last, Links::All] {
            let err = root
                .resolve(Path::new("d/secret.txt"), links, &caller)
                .unwrap_err();
            assert_eq!(err.errno(), libc::ENOENT, "{links:?}");
        }
        assert!(root.open_dir(Path::new("d")).is_err());
        assert!(root.entry(Path::new("../outside/secret.txt")).is_err());
    }

    #[test]
    fn links_inside_the_root_are_followed_only_where_allowed() {
        let (dir, root) = tree();
        let base = root.path().to_path_buf();
        symlink("d/a.txt", base.join("rel")).unwrap();
        symlink(base.join("d/e/b.txt"), base.join("abs")).unwrap();
        symlink("e/../../d/e", base.join("d/via")).unwrap();
        symlink("../outside/secret.txt", base.join("out")).unwrap();
        symlink(dir.path().join("outside/secret.txt"), base.join("abs-out")).unwrap();
        symlink("loop", base.join("loop")).unwrap();
        let caller = Caller::root();
        let resolve = |p: &str, links| root.resolve(Path::new(p), links, &caller);
        assert_eq!(read(&resolve("rel", Links::Last).unwrap()), b"a");
        assert_eq!(read(&resolve("abs", Links::Last).unwrap()), b"b");
        assert_eq!(read(&resolve("d/via/b.txt", Links::All).unwrap()), b"b");
        // With Links::Last a directory on the path as named must be real.
        assert!(resolve("d/via/b.txt", Links::Last).is_err());
        for escape in ["out", "abs-out", "loop", "../root/d/a.txt", "/etc/passwd"] {
            let err = resolve(escape, Links::All).unwrap_err();
            assert_eq!(err.errno(), libc::ENOENT, "{escape}");
        }
    }

    #[test]
    fn fifos_and_directories_are_found_but_never_opened_for_reading() {
        let (_dir, root) = tree();
        let fifo = root.path().join("pipe");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o644)).unwrap();
        let found = root
            .resolve(Path::new("pipe"), Links::All, &Caller::root())
            .unwrap();
        assert_eq!(
            found.open(Path::new("pipe")).unwrap_err().errno(),
            libc::ENOENT
        );
        let dir = root.entry(Path::new("d")).unwrap();
        assert_eq!(dir.open(Path::new("d")).unwrap_err().errno(), libc::ENOENT);
    }

    #[test]
    fn the_caller_must_search_every_directory_and_read_the_file() {
        let (_dir, root) = tree();
        let base = root.path().to_path_buf();
        std::fs::set_permissions(base.join("d/e"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(base.join("d/a.txt"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        symlink("d/e/b.txt", base.join("link")).unwrap();
        let nobody = Caller::new(65534, 65534, 0);
        let errno = |p: &str| {
            root.resolve(Path::new(p), Links::All, &nobody)
                .map(|_| 0)
                .unwrap_or_else(|e| e.errno())
        };
        assert_eq!(errno("d/a.txt"), libc::EACCES);
        assert_eq!(errno("d/e/b.txt"), libc::EACCES);
        assert_eq!(errno("link"), libc::EACCES, "the target's directory counts");
        // Whether a name exists in a directory that may not be searched stays unknown.
        assert_eq!(errno("d/e/nothing.txt"), libc::EACCES);
        assert_eq!(errno("d/nothing.txt"), libc::ENOENT);
        assert!(root
            .resolve(Path::new("link"), Links::Last, &Caller::root())
            .is_ok());
    }
}
