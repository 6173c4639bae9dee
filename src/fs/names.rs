//! Which name is which: an original, or `SOURCE@SPEC` where SOURCE is the longest prefix
//! ending before an `@` that names a regular file (filesystem.md, "Names").

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::source;

pub enum Resolved {
    /// An entry of the source tree, with its lstat.
    Real(std::fs::Metadata),
    /// `source` (relative to the root) converted by `spec`.
    Variant {
        source: PathBuf,
        spec: String,
    },
    Missing,
}

/// Resolves `name` in the directory `dir` (relative to `root`).
pub fn resolve(root: &Path, dir: &Path, name: &OsStr) -> Resolved {
    let relative = dir.join(name);
    if let Ok(meta) = std::fs::symlink_metadata(root.join(&relative)) {
        return Resolved::Real(meta); // real names win
    }
    let bytes = name.as_bytes();
    // Longest prefix first: `logo@2x.png@format,webp` is `logo@2x.png` converted.
    for at in memchr_rev_all(b'@', bytes) {
        let prefix = OsString::from_vec(bytes[..at].to_vec());
        let source = dir.join(&prefix);
        if is_source_file(root, &source) {
            let spec = OsStr::from_bytes(&bytes[at + 1..]);
            return Resolved::Variant {
                source,
                spec: spec.to_string_lossy().into_owned(),
            };
        }
    }
    Resolved::Missing
}

/// A regular file, or a symlink to one that stays inside the root.
pub fn is_source_file(root: &Path, relative: &Path) -> bool {
    let path = root.join(relative);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => true,
        Ok(meta) if meta.is_symlink() => source::resolve_inside(root, &path)
            .map(|p| p.is_file())
            .unwrap_or(false),
        _ => false,
    }
}

/// The file a variant reads: the source itself, or the target of an in-root symlink.
pub fn source_path(root: &Path, relative: &Path) -> crate::error::Result<PathBuf> {
    let path = root.join(relative);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_symlink() => source::resolve_inside(root, &path),
        Ok(_) => Ok(path),
        Err(e) => Err(crate::error::Error::io(relative.display(), e)),
    }
}

fn memchr_rev_all(needle: u8, haystack: &[u8]) -> impl Iterator<Item = usize> + '_ {
    (1..haystack.len())
        .rev()
        .filter(move |&i| haystack[i] == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_existing_prefix_is_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("logo@2x.png"), b"x").unwrap();
        std::fs::write(root.join("logo"), b"x").unwrap();
        let name = OsStr::new("logo@2x.png@format,webp");
        match resolve(root, Path::new(""), name) {
            Resolved::Variant { source, spec } => {
                assert_eq!(source, Path::new("logo@2x.png"));
                assert_eq!(spec, "format,webp");
            }
            _ => panic!("not a variant"),
        }
        // A real file with the exact name wins.
        std::fs::write(root.join("logo@2x.png@format,webp"), b"real").unwrap();
        assert!(matches!(
            resolve(root, Path::new(""), name),
            Resolved::Real(_)
        ));
        assert!(matches!(
            resolve(root, Path::new(""), OsStr::new("nothing@format,png")),
            Resolved::Missing
        ));
        assert!(matches!(
            resolve(root, Path::new(""), OsStr::new("@format,png")),
            Resolved::Missing
        ));
    }
}
