//! Reading source files: never through a symlink that leaves the root, never writing.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::limits::Limits;

/// A source's identity: when any of it changes, converted variants are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Reads of a file that keeps changing before EAGAIN (1 + 2 + 4 + 8 ms apart).
const ATTEMPTS: u32 = 5;

/// Reads a whole regular file, refusing what exceeds `limits` before reading it.
/// The bytes are one version of the file: if it changes while being read, it is read again.
pub fn read(path: &Path, limits: &Limits) -> Result<(Vec<u8>, Identity)> {
    for attempt in 0..ATTEMPTS {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(path.display(), e))?;
        let before = file.metadata().map_err(|e| Error::io(path.display(), e))?;
        if !before.is_file() {
            return Err(Error::NotFound(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        limits.check_source_bytes(before.len())?;
        let mut bytes = Vec::with_capacity(before.len() as usize);
        (&mut file)
            .take(limits.max_source_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path.display(), e))?;
        limits.check_source_bytes(bytes.len() as u64)?;
        let after = file.metadata().map_err(|e| Error::io(path.display(), e))?;
        let identity = Identity::of(&after);
        if Identity::of(&before) == identity && bytes.len() as u64 == identity.size {
            return Ok((bytes, identity));
        }
        // Most likely caught in the middle of a write: give the writer time to finish it
        // (three attempts back to back all failed under a rewrite every 3 ms: EAGAIN).
        if attempt + 1 < ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(1 << attempt));
        }
    }
    Err(Error::Io {
        errno: libc::EAGAIN,
        message: format!("{}: changed on every read", path.display()),
    })
}

/// Joins a path relative to `root` that may only go down (no `..`, no absolute part).
pub fn join_inside(root: &Path, relative: &str) -> Result<PathBuf> {
    let relative = Path::new(relative);
    let mut joined = root.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => joined.push(part),
            Component::CurDir => {}
            _ => {
                return Err(Error::spec(format!(
                    "path '{}' must stay inside the source root",
                    relative.display()
                )))
            }
        }
    }
    Ok(joined)
}

/// Resolves `path` (symlinks included) and checks that it is still inside `root`.
pub fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf> {
    let resolved = path
        .canonicalize()
        .map_err(|e| Error::io(path.display(), e))?;
    let root = root
        .canonicalize()
        .map_err(|e| Error::io(root.display(), e))?;
    if !resolved.starts_with(&root) {
        return Err(Error::NotFound(format!(
            "{}: leads outside the source root",
            path.display()
        )));
    }
    Ok(resolved)
}

/// Reads a file named relative to the source root (a watermark image), inside it only.
pub fn read_inside(root: &Path, relative: &str, limits: &Limits) -> Result<Vec<u8>> {
    let path = resolve_inside(root, &join_inside(root, relative)?)?;
    read(&path, limits).map(|(bytes, _)| bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_climb_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("in.txt"), b"in").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("in.txt", root.join("inner-link.txt")).unwrap();
        let limits = Limits::default();
        assert_eq!(read_inside(&root, "in.txt", &limits).unwrap(), b"in");
        assert_eq!(
            read_inside(&root, "inner-link.txt", &limits).unwrap(),
            b"in"
        );
        assert!(read_inside(&root, "../secret.txt", &limits).is_err());
        assert!(read_inside(&root, "/etc/passwd", &limits).is_err());
        assert!(read_inside(&root, "link.txt", &limits).is_err());
    }

    #[test]
    fn reads_refuse_oversized_files_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 100]).unwrap();
        let limits = Limits {
            max_source_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(read(&big, &limits).unwrap_err().errno(), libc::EFBIG);
        std::os::unix::fs::symlink(&big, dir.path().join("link")).unwrap();
        assert!(read(&dir.path().join("link"), &Limits::default()).is_err());
        let (bytes, id) = read(&big, &Limits::default()).unwrap();
        assert_eq!((bytes.len(), id.size), (100, 100));
    }
}
