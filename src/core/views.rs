//! Whole-tree views: `@style,NAME/` in the root is the source tree seen through the style
//! NAME, for tools that walk directories and never type an `@` name (rsync, find, a photo
//! frame, a gallery generator).
//!
//! A view mirrors every directory of the source. Its files are the source's images
//! (recognised by extension), each the variant `IMAGE@style,NAME`: the same cache entries,
//! the same bytes, the exact size. When the style sets an output format the extension
//! becomes the format's (`a.jpg` → `a.webp`); of several sources that map to one name the
//! first in byte order keeps it and the others show their full name plus the extension
//! (`a.png.webp`). Other files are not shown. Symlinks are not followed into views.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::FileType;

use super::handles::{Charge, DirEntry, Listing};
use super::inodes::{Kind, Node};
use super::{logged, Attr, ImgFs};
use crate::error::{Error, Result};
use crate::source::{Caller, Identity, Links, Walked, READ, SEARCH};
use crate::spec::{OutputKind, Spec};

/// A view's name in the root is this and the style's name.
pub const VIEW_PREFIX: &str = "@style,";

/// Entries of a view handed out per READDIRPLUS: the images among them convert together.
pub const VIEW_BATCH: usize = 32;

/// Extensions of the files a view shows (compared without case).
const IMAGE_EXTENSIONS: [&str; 11] = [
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "avif",
];

/// Whether `name` is shown in views: an image by its extension.
pub fn is_image(name: &OsStr) -> bool {
    let name = name.as_bytes();
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let extension = &name[dot + 1..];
    dot > 0
        && IMAGE_EXTENSIONS
            .iter()
            .any(|known| extension.eq_ignore_ascii_case(known.as_bytes()))
}

/// The extension a style's output takes, if the style decides it.
pub fn output_extension(spec: &Spec) -> Option<&'static str> {
    match spec.output {
        OutputKind::Info | OutputKind::AverageHue => Some("json"),
        OutputKind::Image => spec.format.map(|format| format.name()),
    }
}

/// What a view directory shows for the images `sources`: shown name → source name.
pub fn shown_names(
    mut sources: Vec<OsString>,
    extension: Option<&str>,
) -> BTreeMap<OsString, OsString> {
    sources.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let Some(extension) = extension else {
        return sources.into_iter().map(|s| (s.clone(), s)).collect();
    };
    let with_extension = |base: &[u8]| {
        let mut name = base.to_vec();
        name.push(b'.');
        name.extend_from_slice(extension.as_bytes());
        OsString::from_vec(name)
    };
    let mut shown = BTreeMap::new();
    let mut second = Vec::new();
    for source in sources {
        let bytes = source.as_bytes();
        let stem = &bytes[..bytes
            .iter()
            .rposition(|&b| b == b'.')
            .unwrap_or(bytes.len())];
        let name = with_extension(stem);
        match shown.entry(name) {
            Entry::Occupied(_) => second.push(source),
            Entry::Vacant(free) => {
                free.insert(source);
            }
        }
    }
    // The others by their full name; one that would still collide is not shown.
    for source in second {
        shown
            .entry(with_extension(source.as_bytes()))
            .or_insert(source);
    }
    shown
}

/// How often a view directory's names are listed again for lookups, at most, however often
/// its source directory changes: as long as the kernel may keep names (`--attr-timeout`),
/// and at least a second. A lookup asks for one name and a listing reads them all, so a user
/// who kept a large directory changing made every lookup in its view a full listing on the
/// request threads, one after another (third hostile review of 2026-12-03). Names held a
/// little too long are only hints: every lookup still resolves its source file in the
/// directory there now, as the caller. An OPENDIR, which reads them all anyway, lists anew.
pub fn relist_interval(attr_ttl: Duration) -> Duration {
    attr_ttl.max(Duration::from_secs(1))
}

/// A directory of a view. The names it shows are listed from its source directory once
/// per version of that directory (its mtime moves when an entry is added or removed), and
/// for lookups at most once per [`relist_interval`].
#[derive(Debug, Default)]
pub struct ViewDirNode {
    names: Mutex<HeldNames>,
}

#[derive(Debug, Default)]
struct HeldNames {
    listed: Option<Listed>,
    /// Requests listing the directory now, outside the lock; lookups meanwhile take the
    /// names held.
    listing: usize,
}

#[derive(Debug)]
struct Listed {
    /// Of the source directory when it was listed.
    identity: Identity,
    /// When the listing started: its names are the directory's at that time or later.
    at: Instant,
    names: Arc<ViewNames>,
}

/// Counts a request listing a view directory while it lives (a listing may fail or panic).
struct ListingNow<'a>(&'a ViewDirNode);

impl Drop for ListingNow<'_> {
    fn drop(&mut self) {
        let mut held = self.0.names.lock().unwrap_or_else(|e| e.into_inner());
        held.listing -= 1;
    }
}

/// Whether the names held may answer now: those of the directory's version, or, for a
/// lookup, ones listed within `interval` or any while another request lists it again.
fn may_answer(
    held: &HeldNames,
    listed: &Listed,
    identity: &Identity,
    stale_for: Option<Duration>,
) -> bool {
    listed.identity == *identity
        || stale_for.is_some_and(|interval| listed.at.elapsed() < interval || held.listing > 0)
}

/// What one view directory shows.
#[derive(Debug)]
pub struct ViewNames {
    /// Images: shown name → source name.
    pub files: BTreeMap<OsString, OsString>,
    /// Subdirectories, by their source name and inode number there.
    pub dirs: BTreeMap<OsString, u64>,
    /// The names' memory, counted while the kernel holds the directory (held for its drop).
    _charge: Charge,
}

/// The style of a view path (`@style,NAME/a/b`) and the source directory it mirrors (`a/b`).
pub fn split(path: &Path) -> Option<(&str, PathBuf)> {
    let mut components = path.components();
    let Some(Component::Normal(first)) = components.next() else {
        return None;
    };
    let style = first.to_str()?.strip_prefix(VIEW_PREFIX)?;
    Some((style, components.as_path().to_path_buf()))
}

/// The style and source directory of the view directory `node`.
fn split_view(node: &Node) -> Result<(&str, PathBuf)> {
    split(&node.path).ok_or_else(|| Error::NotFound("a view".into()))
}

fn dir_of(node: &Node) -> &ViewDirNode {
    match &node.kind {
        Kind::ViewDir(dir) => dir,
        _ => unreachable!("a view directory node"),
    }
}

impl ImgFs {
    /// The spec of the style a view shows, if it is one of the mount's styles.
    pub(super) fn view_spec(&self, style: &str) -> Option<Spec> {
        if !self.styles.contains(style) {
            return None;
        }
        Spec::parse(&format!("style,{style}"), &self.styles).ok()
    }

    /// What the view directory `node` shows, to `caller`, who must have the rights `want`
    /// on its source directory and search every directory on the way, judged here: the
    /// kernel judged the attributes of the directory that had the path at lookup (second
    /// hostile review of 2026-12-03). `fresh`: the names of the directory's version now (an
    /// OPENDIR); otherwise a lookup's (see [`relist_interval`]). Answers the source
    /// directory, walked to.
    fn view_names(
        &self,
        node: &Node,
        want: u32,
        caller: &Caller,
        fresh: bool,
    ) -> Result<(Walked, Arc<ViewNames>)> {
        let walked = self.root.walk_into(&split_view(node)?.1, want, caller)?;
        let identity = walked.dir().meta.identity();
        let lock = || dir_of(node).names.lock().unwrap_or_else(|e| e.into_inner());
        let mut held = lock();
        if let Some(listed) = &held.listed {
            let stale_for = (!fresh).then_some(self.view_relist);
            if may_answer(&held, listed, &identity, stale_for) {
                return Ok((walked, listed.names.clone()));
            }
        }
        held.listing += 1;
        drop(held);
        let _listing = ListingNow(dir_of(node));
        let at = Instant::now();
        let names = self.list_view(node, &walked, caller)?;
        let mut held = lock();
        if held.listed.as_ref().is_none_or(|older| older.at < at) {
            held.listed = Some(Listed {
                identity,
                at,
                names: names.clone(),
            });
        }
        Ok((walked, names))
    }

    /// Lists the source directory of the view directory `node`, `walked` to for `caller`,
    /// whose share of the listing memory the names take.
    fn list_view(&self, node: &Node, walked: &Walked, caller: &Caller) -> Result<Arc<ViewNames>> {
        let (style, dir) = split_view(node)?;
        let extension = self.view_spec(style).as_ref().and_then(output_extension);
        let fd = walked.dir().open_dir(&dir)?;
        let io = |e: rustix::io::Errno| Error::io(dir.display(), e.into());
        let (mut images, mut dirs) = (Vec::new(), BTreeMap::new());
        let mut charge = self.handles.charge(caller.uid);
        // An image's name is kept twice (shown and source), a map entry costs about a
        // listing entry.
        let cost = |name: &OsStr, times: usize| (size_of::<DirEntry>() + times * name.len()) as u64;
        for entry in rustix::fs::Dir::read_from(&fd).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if matches!(name.as_bytes(), b"." | b"..") {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| FileType::from_raw_mode(st.st_mode))
                        .unwrap_or(FileType::Unknown)
                }
                kind => kind,
            };
            match kind {
                FileType::Directory => {
                    charge.add(cost(name, 1), &node.path)?;
                    dirs.insert(name.to_os_string(), entry.ino());
                }
                FileType::RegularFile if is_image(name) => {
                    charge.add(cost(name, 2), &node.path)?;
                    images.push(name.to_os_string());
                }
                _ => {}
            }
        }
        Ok(Arc::new(ViewNames {
            files: shown_names(images, extension),
            dirs,
            _charge: charge,
        }))
    }

    /// The attributes of the view directory at `path`: its source directory's, its own
    /// number.
    pub(super) fn view_dir_attr(&self, ino: u64, path: &Path) -> Result<Attr> {
        let (_, dir) = split(path).ok_or_else(|| Error::NotFound("a view".into()))?;
        let meta = self.root.entry(&dir)?.meta;
        if !meta.is_dir() {
            return Err(Error::NotFound(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        Ok(Attr::source(ino, &meta))
    }

    /// LOOKUP of `name` in the view directory `dir` (inode `parent`): a subdirectory, or
    /// an image converted by the style (its exact size is part of the answer).
    pub(super) fn lookup_in_view(
        self: &Arc<Self>,
        caller: &Caller,
        (parent, dir): (u64, &Node),
        name: &OsStr,
        reply: impl FnOnce(Result<Attr>) + Send + 'static,
    ) {
        let path = dir.path.join(name);
        let (walked, names) = match self.view_names(dir, SEARCH, caller, false) {
            Ok(judged) => judged,
            Err(err) => return reply(Err(logged(&path, err))),
        };
        if names.dirs.contains_key(name) {
            let ino = self.inodes().look_up_view_dir(&path);
            return reply(self.view_dir_attr(ino, &path));
        }
        let Some(source_name) = names.files.get(name) else {
            return reply(Err(Error::NotFound(path.display().to_string())));
        };
        let Some((style, source_dir)) = split(&dir.path) else {
            return reply(Err(Error::NotFound(path.display().to_string())));
        };
        let source = source_dir.join(source_name);
        let found = match self
            .root
            .resolve_in(&walked, source_name, &source, Links::Last, caller)
        {
            Ok(found) if found.meta.is_file() => found,
            Ok(_) => return reply(Err(Error::NotFound(source.display().to_string()))),
            Err(err) => return reply(Err(logged(&path, err))),
        };
        let shown = (parent, name, path.as_path());
        let made = (source, found, format!("style,{style}"));
        self.lookup_variant(caller, shown, made, Some(source_name.clone()), reply);
    }

    /// READDIRPLUS of a view hands out each image with its attributes, so its conversion
    /// must be done: those of one batch of entries (from `offset`) are started together and
    /// run in parallel on the workers; `then` gets their answers, by entry index, from the
    /// thread that answers last (at once if the batch has no image).
    pub(super) fn convert_view_batch(
        self: &Arc<Self>,
        caller: &Caller,
        (ino, node): (u64, &Node),
        listing: &Listing,
        offset: usize,
        then: impl FnOnce(HashMap<usize, Result<Attr>>) + Send + 'static,
    ) {
        let images: Vec<(usize, &DirEntry)> = listing
            .entries
            .iter()
            .enumerate()
            .skip(offset)
            .take(VIEW_BATCH)
            .filter(|(_, e)| e.source.is_some())
            .collect();
        if images.is_empty() {
            return then(HashMap::new());
        }
        // Every lookup answers exactly once (a dropped conversion answers EIO), so the
        // last answer finds all the others here.
        let batch = Arc::new(Mutex::new(Batch {
            answers: HashMap::new(),
            left: images.len(),
            then: Some(Box::new(then)),
        }));
        for (i, entry) in images {
            let batch = batch.clone();
            self.lookup_in_view(caller, (ino, node), &entry.name, move |result| {
                let mut batch = batch.lock().unwrap_or_else(|e| e.into_inner());
                batch.answers.insert(i, result);
                batch.left -= 1;
                if batch.left == 0 {
                    let (answers, then) = (std::mem::take(&mut batch.answers), batch.then.take());
                    drop(batch);
                    if let Some(then) = then {
                        then(answers);
                    }
                }
            });
        }
    }

    /// OPENDIR of a view directory: its subdirectories and shown images.
    pub(super) fn view_listing(&self, node: &Node, caller: &Caller) -> Result<Listing> {
        let (walked, names) = self.view_names(node, READ, caller, true)?;
        let meta = walked.dir().meta;
        let (_, dir) = split(&node.path).ok_or_else(|| Error::NotFound("a view".into()))?;
        let dot = |name: &str| DirEntry {
            name: name.into(),
            kind: FileType::Directory,
            source_ino: meta.ino,
            source: None,
        };
        let (mut entries, mut charge) =
            (vec![dot("."), dot("..")], self.handles.charge(caller.uid));
        let dirs = names.dirs.iter().map(|(name, &ino)| DirEntry {
            name: name.clone(),
            kind: FileType::Directory,
            source_ino: ino,
            source: None,
        });
        let files = names.files.iter().map(|(shown, source)| DirEntry {
            name: shown.clone(),
            kind: FileType::RegularFile,
            source_ino: meta.ino,
            source: Some(source.clone()),
        });
        for entry in dirs.chain(files) {
            charge.add(entry.cost(), &node.path)?;
            entries.push(entry);
        }
        Ok(Listing {
            dir: Some(walked.dir().open_dir(&dir)?),
            meta,
            entries,
            view: true,
            _charge: charge,
        })
    }
}

/// The answers of a view batch's conversions so far, and who gets them all.
struct Batch {
    answers: HashMap<usize, Result<Attr>>,
    left: usize,
    #[allow(clippy::type_complexity)]
    then: Option<Box<dyn FnOnce(HashMap<usize, Result<Attr>>) + Send>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sources: &[&str], extension: Option<&str>) -> Vec<(String, String)> {
        let sources = sources.iter().map(OsString::from).collect();
        shown_names(sources, extension)
            .into_iter()
            .map(|(shown, source)| (shown.into_string().unwrap(), source.into_string().unwrap()))
            .collect()
    }

    #[test]
    fn images_take_the_styles_extension_and_the_first_source_keeps_the_name() {
        let shown = names(&["b.png", "a.png", "a.jpg", "c.JPEG"], Some("webp"));
        assert_eq!(
            shown,
            [
                ("a.png.webp", "a.png"),
                ("a.webp", "a.jpg"),
                ("b.webp", "b.png"),
                ("c.webp", "c.JPEG"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // Without a format in the style, names stay.
        assert_eq!(names(&["a.jpg"], None), [("a.jpg".into(), "a.jpg".into())]);
    }

    #[test]
    fn images_are_recognised_by_extension_in_any_case() {
        for image in [
            "a.jpg", "b.JPEG", "c.Png", "d.heif", "e.avif", "f.tif", "g.x.webp",
        ] {
            assert!(is_image(OsStr::new(image)), "{image}");
        }
        for other in [
            "a.txt",
            "jpg",
            ".jpg",
            "a.jpg@format,webp",
            "a.jpgx",
            "noext",
        ] {
            assert!(!is_image(OsStr::new(other)), "{other}");
        }
    }

    #[test]
    fn a_view_path_is_its_style_and_the_mirrored_directory() {
        assert_eq!(
            split(Path::new("@style,small/a/b")),
            Some(("small", PathBuf::from("a/b")))
        );
        assert_eq!(
            split(Path::new("@style,small")),
            Some(("small", PathBuf::new()))
        );
        assert_eq!(split(Path::new("photos/a")), None);
    }
}
