//! The source tree, confined and judged: every file a request reads is opened relative to
//! the root's directory descriptor (never by a path string that the kernel resolves from
//! `/`), so nothing outside the root is reached, even through a directory swapped for a
//! symlink while mounted; and every file a variant is made from is judged readable by the
//! caller, as the kernel would judge it through the mount.
//!
//! [`Root`] opens entries; [`Caller`] is who asks; [`read_file`] reads one version of a
//! file, [`read_range`] a part of one.

mod access;
mod acl;
mod meta;
mod read;
mod root;

pub use access::{Caller, READ, SEARCH};
pub use acl::{read_only as read_only_acl, ACCESS_ACL};
pub use meta::{Identity, Meta};
pub use read::{read_file, read_range};
#[cfg(test)]
pub use root::STEPS;
pub use root::{open_subdir, Found, Links, Root, Walked};

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Where `path`, as creating it would resolve it, is `dir` or below it: the first of its
/// ancestors (itself included) that is `dir`, judged by identity (device and inode), so a
/// symlink or a bind mount into `dir` counts. Each part that exists is taken with its
/// symlinks followed, and `..` after a part yet to be made takes that part away again;
/// nothing is created to judge.
pub fn within(path: &Path, dir: &Path) -> io::Result<Option<PathBuf>> {
    let dir = std::fs::metadata(dir)?;
    let mut at = PathBuf::from("/");
    for part in std::path::absolute(path)?.components() {
        match part {
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                at.push(name);
                if at.exists() {
                    at = at.canonicalize()?;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    loop {
        if let Ok(meta) = std::fs::metadata(&at) {
            if (meta.dev(), meta.ino()) == (dir.dev(), dir.ino()) {
                return Ok(Some(at));
            }
        }
        if !at.pop() {
            return Ok(None);
        }
    }
}
