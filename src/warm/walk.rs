//! The walk of `imgfs warm`: every regular file under the root whose first bytes are an
//! image's. Each directory is opened relative to its parent's descriptor
//! ([`open_subdir`]: `O_DIRECTORY | O_NOFOLLOW`, one component), so the length of a path
//! does not matter (its depth does: one descriptor is open per level, down to
//! [`MAX_DEPTH`]) and a directory swapped for a symlink between the listing and the open is
//! refused, not followed; entries are found as [`Found::in_dir`] finds them (no symlink
//! followed; FIFOs and devices are never opened). A directory that cannot be opened or
//! listed is one failure (its path, shortened if long, and why; the first
//! [`SHOWN_FAILURES`](super::failures::SHOWN_FAILURES) are logged once and kept, the rest
//! only counted) and the walk goes on.
//! A file of several names (hard links) is listed once, under the first name met: the
//! others are the same source, so the same conversions and disk-cache entries; they are
//! counted, each logged at debug level as "skipped: same file as ...".
//! Per image only its name, its directory's number and its size are kept; each
//! directory's name once, in [`Walk::path`]'s table.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Dir, FileType};
use tracing::{debug, warn};

use super::failures::Failures;
use crate::error::Error;
use crate::logging::{one_line, short_path};
use crate::pipeline::codec;
use crate::source::{open_subdir, Found, Root};

/// The deepest directory the walk lists, in levels below the root; a deeper one is not
/// walked (one failure). No image could be warmed there: each level adds at least two bytes
/// (`a/`) to the path from the root, so an image below this depth has a path of at least
/// PATH_MAX bytes, which fails "File name too long" (images between here and PATH_MAX do
/// fail so, as a mount would answer). The walk holds a descriptor and a listing buffer per
/// level, and `warm` raises its descriptor limit up to 2^20: without this bound a chain of
/// nested directories would cost both, as deep as anyone cared to make it (fourth hostile
/// review of 2026-12-03).
pub const MAX_DEPTH: usize = libc::PATH_MAX as usize / 2 - 1;

/// A directory met on the walk: its name in its parent (the root has none).
struct Node {
    parent: u32,
    name: Box<OsStr>,
}

/// An image found: its name in the directory `dir` (an index of [`Walk::dirs`]).
pub struct Image {
    dir: u32,
    name: Box<OsStr>,
    pub size: u64,
}

/// What the walk found.
#[derive(Default)]
pub struct Walk {
    dirs: Vec<Node>,
    pub images: Vec<Image>,
    /// Directories not walked: how many, and the first few as "path: not walked: why".
    pub failures: Failures,
    /// Names of a file listed already (hard links), skipped.
    pub links: usize,
}

impl Walk {
    /// The path of `image` relative to the root.
    pub fn path(&self, image: &Image) -> PathBuf {
        self.dir_path(image.dir).join(&*image.name)
    }

    fn dir_path(&self, mut dir: u32) -> PathBuf {
        let mut names = Vec::new();
        while dir != 0 {
            let node = &self.dirs[dir as usize];
            names.push(&node.name);
            dir = node.parent;
        }
        names.iter().rev().map(|name| &***name).collect()
    }

    /// Records that the directory `name` in `dir` (`dir` itself if None) could not be
    /// opened or listed. A directory that failed gets no entry in the table: a failure
    /// past the first few costs nothing but its count.
    fn fail(&mut self, dir: u32, name: Option<&OsStr>, why: impl std::fmt::Display) {
        // Taken out while the message borrows the directory table.
        let mut failures = std::mem::take(&mut self.failures);
        let message = || {
            let mut path = self.dir_path(dir);
            path.extend(name);
            if path.as_os_str().is_empty() {
                path.push(".");
            }
            format!("{}: not walked: {why}", short_path(&path))
        };
        failures.add(message, |line| warn!("{}", one_line(line)));
        self.failures = failures;
    }

    /// A new directory `name` in `parent`; its number.
    fn add_dir(&mut self, parent: u32, name: &OsStr) -> u32 {
        self.dirs.push(Node {
            parent,
            name: name.into(),
        });
        (self.dirs.len() - 1) as u32
    }
}

/// Every image under `root`, until `stop` is set. One descriptor is open per level of the
/// directory being listed; a level past the descriptor limit, or past [`MAX_DEPTH`], is a
/// failure like any other.
pub fn walk(root: &Root, stop: &AtomicBool) -> Walk {
    walk_within(root, stop, MAX_DEPTH)
}

/// [`walk`], listing directories at most `max_depth` levels below the root.
fn walk_within(root: &Root, stop: &AtomicBool, max_depth: usize) -> Walk {
    let mut walk = Walk::default();
    walk.dirs.push(Node {
        parent: 0,
        name: OsStr::new("").into(),
    });
    let mut open: Vec<(u32, Dir)> = Vec::new();
    // Files of more than one name met so far (device, inode): the image's index, if one.
    let mut seen: HashMap<(u64, u64), Option<u32>> = HashMap::new();
    match root.open_dir(Path::new("")) {
        Ok(fd) => match Dir::new(fd) {
            Ok(listing) => open.push((0, listing)),
            Err(err) => walk.fail(0, None, std::io::Error::from(err)),
        },
        Err(err) => walk.fail(0, None, err),
    }
    loop {
        // The root is level 0: a subdirectory of this listing is level `depth`.
        let depth = open.len();
        let Some((dir, listing)) = open.last_mut() else {
            break;
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let dir = *dir;
        let entry = match listing.next() {
            None => {
                open.pop();
                continue;
            }
            Some(Err(err)) => {
                open.pop();
                walk.fail(dir, None, std::io::Error::from(err));
                continue;
            }
            Some(Ok(entry)) => entry,
        };
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let fd = listing.fd().expect("a Dir has its descriptor");
        let found = match entry.file_type() {
            FileType::Directory => None,
            FileType::RegularFile | FileType::Unknown => {
                match Found::in_dir(fd, name, Path::new(name)) {
                    Ok(found) => Some(found),
                    Err(_) => continue, // gone meanwhile
                }
            }
            _ => continue, // symlinks (their targets inside are warmed as themselves), others
        };
        match found {
            Some(found) if found.meta.is_file() => {
                let identity = (found.meta.dev, found.meta.ino);
                if let Some(first) = seen.get(&identity) {
                    if let Some(first) = first {
                        walk.links += 1;
                        debug!(
                            "{}: skipped: same file as {}",
                            short_path(&walk.dir_path(dir).join(name)),
                            short_path(&walk.path(&walk.images[*first as usize]))
                        );
                    }
                    continue;
                }
                let image = is_image(&found, name).then(|| {
                    walk.images.push(Image {
                        dir,
                        name: name.into(),
                        size: found.meta.size,
                    });
                    (walk.images.len() - 1) as u32
                });
                if found.meta.nlink > 1 {
                    seen.insert(identity, image);
                }
            }
            Some(found) if !found.meta.is_dir() => {}
            _ => {
                if depth > max_depth {
                    walk.fail(
                        dir,
                        Some(name),
                        format!("more than {max_depth} levels deep"),
                    );
                    continue;
                }
                match open_subdir(fd, name).and_then(Dir::new) {
                    Ok(sub) => open.push((walk.add_dir(dir, name), sub)),
                    Err(err) => walk.fail(dir, Some(name), std::io::Error::from(err)),
                }
            }
        }
    }
    walk
}

fn is_image(found: &Found, name: &OsStr) -> bool {
    let mut head = [0; 64];
    let read = found.open(Path::new(name)).and_then(|file| {
        rustix::io::read(&file, &mut head).map_err(|e| Error::io(name.display(), e.into()))
    });
    read.is_ok_and(|len| codec::detect(&head[..len]).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn paths(walk: &Walk) -> Vec<String> {
        let mut paths: Vec<_> = walk
            .images
            .iter()
            .map(|image| walk.path(image).display().to_string())
            .collect();
        paths.sort();
        paths
    }

    #[test]
    fn the_walk_finds_images_by_content_below_paths_longer_than_path_max() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.png"), PNG).unwrap();
        std::fs::write(root.join("notes.txt"), b"not an image").unwrap();
        symlink("a.png", root.join("link.png")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            root.join("pipe"),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        // 17 levels of 250-byte names: 4267 bytes of path, past PATH_MAX (4096).
        let long = "d".repeat(250);
        let mut deep = PathBuf::new();
        let mut at =
            rustix::fs::open(root, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
        for _ in 0..17 {
            rustix::fs::mkdirat(&at, long.as_str(), rustix::fs::Mode::from_raw_mode(0o755))
                .unwrap();
            at = open_subdir(&at, OsStr::new(&long)).unwrap();
            deep.push(&long);
        }
        let file = rustix::fs::openat(
            &at,
            "deep.png",
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&file, PNG).unwrap();
        let walk = walk(&Root::open(root).unwrap(), &AtomicBool::new(false));
        assert_eq!(walk.failures.count(), 0, "{:?}", walk.failures.shown());
        let deep = deep.join("deep.png").display().to_string();
        assert_eq!(paths(&walk), ["a.png".to_string(), deep]);
    }

    /// Fourth hostile review of 2026-12-03: every directory that failed was kept and logged
    /// with its whole path. Many failures, far below the root: all counted, the first
    /// SHOWN_FAILURES kept, each message short, and no entry in the directory table.
    #[test]
    fn many_failures_are_counted_and_few_kept_each_short() {
        use super::super::failures::{MAX_FAILURE_BYTES, SHOWN_FAILURES};
        const SIBLINGS: usize = 1000;
        let dir = tempfile::tempdir().unwrap();
        let long = "d".repeat(150);
        let mut at = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::PATH,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        // 30 levels of 150-byte names: 4530 bytes of path, past PATH_MAX.
        for _ in 0..30 {
            rustix::fs::mkdirat(&at, long.as_str(), rustix::fs::Mode::from_raw_mode(0o755))
                .unwrap();
            at = open_subdir(&at, OsStr::new(&long)).unwrap();
        }
        for n in 0..SIBLINGS {
            let name = format!("s{n}");
            rustix::fs::mkdirat(&at, name.as_str(), rustix::fs::Mode::from_raw_mode(0o755))
                .unwrap();
        }
        // The 30th level is listed; its subdirectories, at level 31, are too deep.
        let root = Root::open(dir.path()).unwrap();
        let walk = walk_within(&root, &AtomicBool::new(false), 30);
        assert_eq!(walk.failures.count(), SIBLINGS);
        assert_eq!(walk.failures.shown().len(), SHOWN_FAILURES);
        assert_eq!(walk.dirs.len(), 1 + 30, "failed directories are not kept");
        let bytes: usize = walk.failures.shown().iter().map(String::len).sum();
        assert!(bytes <= SHOWN_FAILURES * 300, "{bytes} bytes kept");
        for failure in walk.failures.shown() {
            assert!(failure.len() < MAX_FAILURE_BYTES, "{failure}");
            assert!(
                failure.starts_with(&format!("…/{long}/s"))
                    && failure.ends_with(": not walked: more than 30 levels deep"),
                "{failure}"
            );
        }
        // One level more and they are walked.
        let walk = walk_within(&root, &AtomicBool::new(false), 31);
        assert_eq!(walk.failures.count(), 0, "{:?}", walk.failures.shown());
        assert_eq!(walk.dirs.len(), 1 + 30 + SIBLINGS);
    }

    #[test]
    fn a_file_of_many_names_is_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("a.png"), PNG).unwrap();
        std::fs::write(root.join("b.png"), PNG).unwrap();
        std::fs::write(root.join("notes.txt"), b"text").unwrap();
        for n in 0..20 {
            std::fs::hard_link(root.join("a.png"), root.join(format!("sub/{n}.png"))).unwrap();
            std::fs::hard_link(root.join("notes.txt"), root.join(format!("sub/{n}.txt"))).unwrap();
        }
        let walk = walk(&Root::open(root).unwrap(), &AtomicBool::new(false));
        assert_eq!(walk.images.len(), 2, "{:?}", paths(&walk));
        assert!(paths(&walk).contains(&"b.png".to_string()));
        assert_eq!(walk.links, 20);
    }

    #[test]
    fn a_subdirectory_swapped_for_a_symlink_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        symlink(dir.path().join("outside"), dir.path().join("d")).unwrap();
        let parent = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::PATH,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let err = open_subdir(&parent, OsStr::new("d")).unwrap_err();
        assert_eq!(err, rustix::io::Errno::NOTDIR);
    }
}
