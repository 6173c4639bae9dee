//! Which name is which: a source entry, or `SOURCE@SPEC` where SOURCE is the longest prefix
//! ending before an `@` that names a regular file (docs/filesystem.md, "Names").

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::own_files::{OwnFile, OWN_DIR};
use crate::error::{Error, Result};
use crate::source::{Caller, Found, Links, Meta, Root};

/// The longest name a directory entry may have (NAME_MAX).
pub const NAME_MAX: usize = 255;

pub enum Resolved {
    /// An entry of the source tree, with its lstat.
    Source(Meta),
    /// `source` (relative to the root) converted by `spec`; `found` is the file read.
    Variant {
        source: PathBuf,
        found: Found,
        spec: String,
    },
    /// The mount's own directory, `.imgfs` in the root (when the source has none).
    Own(OwnFile),
    /// Neither: no entry of that name, and no prefix that names a file.
    Missing,
}

/// Resolves `name` in the directory `dir` (relative to the root), which must still be the
/// directory `dir_id` (device, inode) the kernel judged the caller's way into, for `caller`.
/// A variant's source must be readable by the caller, through every directory on the way.
pub fn resolve(
    root: &Root,
    (dir, dir_id): (&Path, (u64, u64)),
    name: &OsStr,
    caller: &Caller,
) -> Result<Resolved> {
    let bytes = name.as_bytes();
    if bytes.len() > NAME_MAX {
        return Err(Error::NameTooLong(format!(
            "{}: {} bytes, the limit is {NAME_MAX}",
            dir.join(name).display(),
            bytes.len()
        )));
    }
    // The entry is looked for in the directory the kernel judged, not in whatever took its
    // path since (second hostile review of 2026-12-03: a directory swapped in that the
    // caller may not search was listed through the old one's rights).
    let parent = root.entry(dir)?;
    still_the_directory(&parent.meta, dir_id, dir)?;
    match parent.child(name, &dir.join(name)) {
        Ok(found) => return Ok(Resolved::Source(found.meta)), // real names win
        Err(Error::NotFound(_)) => {}
        Err(err) => return Err(err),
    }
    if dir.as_os_str().is_empty() && name == OWN_DIR {
        return Ok(Resolved::Own(OwnFile::Dir));
    }
    // Longest prefix first: `logo@2x.png@format,webp` is `logo@2x.png` converted. Why
    // the longest prefix that exists could not be the source is the answer if none can.
    let mut reason = None;
    let mut walked = None;
    for at in (1..bytes.len()).rev().filter(|&i| bytes[i] == b'@') {
        let prefix = OsStr::from_bytes(&bytes[..at]);
        let source = dir.join(prefix);
        // The directory is walked to once for every candidate (hostile review of
        // 2026-12-03: each walked the whole path again, up to 127 times per name).
        let walked = match &mut walked {
            Some(walked) => walked,
            None => match root.walk_to(dir, caller) {
                Ok(found) => {
                    still_the_directory(&found.dir().meta, dir_id, dir)?;
                    walked.insert(found)
                }
                Err(err @ Error::Denied(_)) => return Err(err),
                Err(_) => break, // gone: no candidate can be there
            },
        };
        match root.resolve_in(walked, prefix, &source, Links::Last, caller) {
            Ok(found) if found.meta.is_file() => {
                let spec = OsStr::from_bytes(&bytes[at + 1..]);
                return Ok(Resolved::Variant {
                    source,
                    found,
                    spec: spec.to_string_lossy().into_owned(),
                });
            }
            Ok(_) => {
                let why = format!("{}: not a regular file", source.display());
                reason = reason.or(Some(Error::NotFound(why)));
            }
            // The kernel stops at what the caller may not search: so does the search.
            Err(err @ Error::Denied(_)) => return Err(err),
            Err(err) if root.entry(&source).is_ok() => reason = reason.or(Some(err)),
            Err(_) => {}
        }
    }
    reason.map_or(Ok(Resolved::Missing), Err)
}

fn still_the_directory(meta: &Meta, (dev, ino): (u64, u64), dir: &Path) -> Result<()> {
    if (meta.dev, meta.ino) == (dev, ino) {
        return Ok(());
    }
    Err(Error::Stale(format!(
        "{}: another directory since its lookup",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(root: &Root, name: &str) -> Result<Resolved> {
        resolve_in(root, "", name, &Caller::root())
    }

    /// `name` resolved in `dir` as it is now.
    fn resolve_in(root: &Root, dir: &str, name: &str, caller: &Caller) -> Result<Resolved> {
        let meta = root.entry(Path::new(dir))?.meta;
        let at = (Path::new(dir), (meta.dev, meta.ino));
        resolve(root, at, OsStr::new(name), caller)
    }

    #[test]
    fn longest_existing_prefix_is_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("logo@2x.png"), b"x").unwrap();
        std::fs::write(path.join("logo"), b"x").unwrap();
        let root = Root::open(path).unwrap();
        match resolved(&root, "logo@2x.png@format,webp").unwrap() {
            Resolved::Variant { source, spec, .. } => {
                assert_eq!(source, Path::new("logo@2x.png"));
                assert_eq!(spec, "format,webp");
            }
            _ => panic!("not a variant"),
        }
        // A real file with the exact name wins.
        std::fs::write(path.join("logo@2x.png@format,webp"), b"real").unwrap();
        assert!(matches!(
            resolved(&root, "logo@2x.png@format,webp"),
            Ok(Resolved::Source(_))
        ));
        for missing in ["nothing@format,png", "@format,png"] {
            assert!(matches!(resolved(&root, missing), Ok(Resolved::Missing)));
        }
        // A prefix that exists but cannot be a source says why.
        std::os::unix::fs::symlink("/etc/passwd", path.join("out")).unwrap();
        let err = resolved(&root, "out@format,png").err().unwrap();
        assert_eq!(err.errno(), libc::ENOENT);
        assert!(err.to_string().contains("outside the source root"), "{err}");
    }

    /// Second hostile review of 2026-12-03: a name was looked up by its directory's path,
    /// so a directory swapped in since the kernel judged the old one answered for it.
    #[test]
    fn a_name_is_looked_up_only_in_the_directory_the_kernel_judged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        for d in ["open", "closed"] {
            std::fs::create_dir(path.join(d)).unwrap();
            std::fs::write(path.join(d).join("a.png"), b"x").unwrap();
        }
        let root = Root::open(path).unwrap();
        let open = root.entry(Path::new("open")).unwrap().meta;
        std::fs::rename(path.join("open"), path.join("was-open")).unwrap();
        std::fs::rename(path.join("closed"), path.join("open")).unwrap();
        for name in ["a.png", "a.png@format,webp", "missing"] {
            let at = (Path::new("open"), (open.dev, open.ino));
            let err = resolve(&root, at, OsStr::new(name), &Caller::root()).err();
            assert_eq!(err.map(|e| e.errno()), Some(libc::ESTALE), "{name}");
        }
        assert!(matches!(
            resolve_in(&root, "open", "a.png", &Caller::root()),
            Ok(Resolved::Source(_))
        ));
    }

    /// Hostile review of 2026-12-03: every `@` candidate walked the whole path again from
    /// the root, so a name of 127 `@` deep down cost 127 walks of the path.
    #[test]
    fn the_directory_is_walked_once_for_every_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let deep = "d/".repeat(30);
        std::fs::create_dir_all(dir.path().join(&deep)).unwrap();
        std::fs::write(dir.path().join(&deep).join("a.png"), b"x").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let name = format!("a.png{}", "@".repeat(120));
        let steps = || crate::source::STEPS.with(|steps| steps.get());
        let before = steps();
        let resolved = resolve_in(&root, deep.trim_end_matches('/'), &name, &Caller::root());
        assert!(matches!(resolved, Ok(Resolved::Variant { .. })));
        let taken = steps() - before;
        assert!(taken <= 30 + 121, "{taken} steps");
    }

    #[test]
    fn names_longer_than_name_max_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let long = format!("a.png@{}", "resize,w_10@".repeat(30));
        assert!(long.len() > NAME_MAX);
        let err = resolved(&root, &long).err().unwrap();
        assert_eq!(err.errno(), libc::ENAMETOOLONG);
    }
}
