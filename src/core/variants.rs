//! Variant names. Each inode is one version of a variant's inputs converted: the kernel
//! keeps pages and size per inode, so a reader of one version is never cut at another's
//! size. A changed input gets a new inode at the next lookup; the old one keeps its version.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, info};

use super::inodes::{Kind, Node, VariantNode};
use super::{logged, views, Attr, ImgFs, OpenFile};
use crate::cache::{Converted, Key};
use crate::convert::Inputs;
use crate::error::{Error, Result};
use crate::source::{read_only_acl, Caller, Found, Identity, Links, Meta};
use crate::spec::Spec;

fn variant_of(node: &Node) -> &VariantNode {
    match &node.kind {
        Kind::Variant(v) => v,
        _ => unreachable!("a variant node"),
    }
}

/// How a variant name is made: the same for every version of its inputs.
struct Recipe {
    /// The source file, relative to the root (it may be a symlink that stays inside).
    source: PathBuf,
    spec: Arc<Spec>,
    canonical: String,
}

impl Recipe {
    fn new(source: PathBuf, spec: Spec) -> Recipe {
        Recipe {
            source,
            canonical: spec.canonical(),
            spec: Arc::new(spec),
        }
    }
}

impl VariantNode {
    fn last_attr(&self) -> Attr {
        *self.attr.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, attr: Attr) {
        *self.attr.lock().unwrap_or_else(|e| e.into_inner()) = attr;
    }

    /// Records that `reader` (uid, gid) may read this version's inputs (judged while they
    /// are current).
    fn judged(&self, reader: (u32, u32)) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if !readers.contains(&reader) && readers.len() < MAX_JUDGED_READERS {
            readers.push(reader);
        }
    }

    /// Whether `caller`'s reading of this version's inputs was judged and allowed.
    fn was_judged(&self, caller: &Caller) -> bool {
        caller.uid == 0
            || self
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&(caller.uid, caller.gid))
    }
}

/// Users remembered per variant inode as allowed to read its inputs; one beyond these is
/// judged anew, and once the inputs moved on gets ESTALE instead of the old version.
const MAX_JUDGED_READERS: usize = 8;

/// The source's status as of `read`, a version read after `meta` was taken (only its size
/// and times can differ: the file is the same inode).
fn as_read(meta: Meta, read: Identity) -> Meta {
    if meta.identity() == read {
        return meta;
    }
    let time = |ns: i128| {
        (
            ns.div_euclid(1_000_000_000) as i64,
            ns.rem_euclid(1_000_000_000) as u32,
        )
    };
    // Without a birth time the identity carries the change time (see `Identity`).
    let ctime = if meta.btime == (0, 0) {
        read.birth_ns
    } else {
        read.mtime_ns
    };
    Meta {
        size: read.size,
        mtime: time(read.mtime_ns),
        ctime: time(ctime),
        ..meta
    }
}

impl ImgFs {
    /// LOOKUP of a variant name: the inode of the version converted now, with its size.
    pub(super) fn lookup_variant(
        self: &Arc<Self>,
        caller: &Caller,
        (parent, name, path): (u64, &OsStr, &Path),
        (source, found, spec_text): (PathBuf, Found, String),
        view_source: Option<OsString>,
        reply: impl FnOnce(Result<Attr>) + Send + 'static,
    ) {
        let spec = match Spec::parse(&spec_text, &self.styles) {
            Ok(spec) => spec,
            Err(err) => return reply(Err(logged(path, err))),
        };
        let source_len = source.file_name().map_or(0, |n| n.len());
        let recipe = Recipe::new(source, spec);
        let inputs = match Inputs::find(&self.root, found, &recipe.spec, caller) {
            Ok(inputs) => inputs,
            Err(err) => return reply(Err(logged(path, err))),
        };
        let inputs = match self.hold(caller.uid, inputs) {
            Ok(inputs) => inputs,
            Err(err) => return reply(Err(logged(path, err))),
        };
        let meta = inputs.source.meta;
        let reader = (caller.uid, caller.gid);
        let (fs, path) = (self.clone(), path.to_path_buf());
        debug_assert_eq!(path.file_name(), Some(name));
        let in_flight = self.lookups.start(parent);
        self.converter.convert(
            &path.clone(),
            &recipe.spec,
            &recipe.canonical,
            inputs,
            caller.uid,
            move |result, version| {
                // Counted until the answer is sent (dropped last).
                let _in_flight = in_flight;
                let out = match result {
                    Ok(out) => out,
                    Err(err) => return reply(Err(err)),
                };
                let meta = as_read(meta, version.source);
                let attr_of = |ino| Attr::variant(ino, &meta, out.len());
                let (ino, node) = fs
                    .inodes()
                    .look_up_variant(&path, version, |ino| VariantNode {
                        source_len,
                        view_source,
                        version: version.clone(),
                        parent,
                        attr: Mutex::new(attr_of(ino)),
                        outdated: AtomicBool::new(false),
                        readers: Mutex::default(),
                    });
                let attr = attr_of(ino);
                variant_of(&node).remember(attr);
                variant_of(&node).judged(reader);
                reply(Ok(attr))
            },
        );
    }

    /// `inputs`, their descriptors counted for `uid` with open handles until they are
    /// dropped (when their conversion ends, or at once if it is not theirs to run).
    fn hold(&self, uid: u32, inputs: Inputs) -> Result<Inputs> {
        let held = self.handles.hold_descriptors(uid, inputs.descriptors())?;
        Ok(inputs.holding(held))
    }

    /// The POSIX ACL variant `node` shows: its source's as it is now, cut to read, so the
    /// kernel lets exactly those read the variant whom the source's ACL lets read it.
    pub(super) fn variant_acl(&self, node: &Node) -> Result<Option<Vec<u8>>> {
        let recipe = self.recipe(node, variant_of(node))?;
        let found = self
            .root
            .resolve(&recipe.source, Links::Last, &Caller::root())?;
        let acl = found
            .access_acl()
            .map_err(|e| Error::io(recipe.source.display(), e))?;
        Ok(acl.and_then(|acl| read_only_acl(&acl)))
    }

    /// How `node`'s name is made, read again from the name (as its lookup read it).
    fn recipe(&self, node: &Node, v: &VariantNode) -> Result<Recipe> {
        if let Some(source) = &v.view_source {
            // The view directory the name is in (`@style,NAME/a/b`) mirrors `a/b`.
            let (style, dir) = node
                .path
                .parent()
                .and_then(views::split)
                .ok_or_else(|| Error::NotFound(format!("{}: a view", node.path.display())))?;
            let spec = Spec::parse(&format!("style,{style}"), &self.styles)?;
            return Ok(Recipe::new(dir.join(source), spec));
        }
        let name = node.path.file_name().unwrap_or_default().as_bytes();
        let source = OsStr::from_bytes(&name[..v.source_len.min(name.len())]);
        let spec_text = String::from_utf8_lossy(name.get(v.source_len + 1..).unwrap_or_default());
        let spec = Spec::parse(&spec_text, &self.styles)?;
        Ok(Recipe::new(node.path.with_file_name(source), spec))
    }

    /// The inputs of `v` as they are now, found for `caller`, if they still are `v`'s
    /// version; None once any moved on (and the kernel's entry for the name is dropped).
    fn current_inputs(
        &self,
        caller: &Caller,
        node: &Node,
        v: &VariantNode,
        recipe: &Recipe,
    ) -> Result<Option<Inputs>> {
        let found = self
            .root
            .resolve(&recipe.source, Links::Last, caller)
            .and_then(|found| Inputs::find(&self.root, found, &recipe.spec, caller));
        match found {
            Ok(inputs) if inputs.version() == v.version => {
                v.judged((caller.uid, caller.gid));
                Ok(Some(inputs))
            }
            // Refused, or failing for a reason of the machine's (out of descriptors, say):
            // the inputs did not move on, so the kernel's entry stays (fourth hostile review
            // of 2026-12-03: each such failure dropped the entry, through the one thread
            // that tells the kernel, while an attacker kept it busy).
            Err(
                err @ (Error::Denied(_)
                | Error::Io { .. }
                | Error::TooManyOpen(_)
                | Error::NoMemory(_)),
            ) => Err(err),
            _ => {
                self.outdate(node, v);
                Ok(None)
            }
        }
    }

    /// Converts `node`'s own version while its inputs still are that version, for
    /// `caller`; Ok(None) once they moved on. `then` runs once.
    fn this_version(
        self: &Arc<Self>,
        caller: &Caller,
        node: Arc<Node>,
        then: impl FnOnce(Result<Option<(Converted, Meta)>>) + Send + 'static,
    ) {
        let v = variant_of(&node);
        let found = self
            .recipe(&node, v)
            .and_then(|recipe| Ok((self.current_inputs(caller, &node, v, &recipe)?, recipe)));
        let (inputs, recipe) = match found {
            Ok((Some(inputs), recipe)) => (inputs, recipe),
            Ok((None, _)) => return then(Ok(None)),
            Err(err) => return then(Err(logged(&node.path, err))),
        };
        let inputs = match self.hold(caller.uid, inputs) {
            Ok(inputs) => inputs,
            Err(err) => return then(Err(logged(&node.path, err))),
        };
        let meta = inputs.source.meta;
        let (fs, held) = (self.clone(), node.clone());
        self.converter.convert(
            &node.path,
            &recipe.spec,
            &recipe.canonical,
            inputs,
            caller.uid,
            move |result, version| {
                let v = variant_of(&held);
                then(result.map(|out| {
                    if *version == v.version {
                        return Some((out, meta));
                    }
                    fs.outdate(&held, v);
                    None
                }))
            },
        );
    }

    /// The inputs of `v` have a newer version: the kernel's entry for the name is dropped,
    /// so the next lookup gets the new inode (once per inode).
    fn outdate(&self, node: &Node, v: &VariantNode) {
        if v.outdated.swap(true, Ordering::Relaxed) {
            return;
        }
        debug!(
            "{}: an input changed, dropping the entry",
            node.path.display()
        );
        if let (Some(kernel), Some(name)) = (self.kernel.get(), node.path.file_name()) {
            kernel.forget_entry(v.parent, name);
        }
    }

    /// GETATTR: always this version's attributes, reconverted if evicted while current;
    /// once the inputs moved on, what the inode last reported.
    pub(super) fn getattr_variant(
        self: &Arc<Self>,
        caller: &Caller,
        ino: u64,
        node: Arc<Node>,
        reply: impl FnOnce(Result<Attr>) + Send + 'static,
    ) {
        let held = node.clone();
        self.this_version(caller, node, move |result| {
            let v = variant_of(&held);
            match result {
                Ok(Some((out, meta))) => {
                    let attr = Attr::variant(ino, &meta, out.len());
                    v.remember(attr);
                    reply(Ok(attr))
                }
                Ok(None) => reply(Ok(v.last_attr())),
                Err(err) => reply(Err(err)),
            }
        });
    }

    /// OPEN: this version's bytes, pinned. Once the inputs moved on they may only come
    /// from the cache, and only to a user this version's inputs were judged for while they
    /// were current (whoever renames the source away must not be served a
    /// variant made from a watermark image, or through a directory, only the user before
    /// them could read). Otherwise ESTALE: the kernel then looks the name up again and
    /// opens the new version (open(2) retries once by itself), so no reader ever gets
    /// bytes that differ from the inode's size.
    pub(super) fn open_variant(
        self: &Arc<Self>,
        caller: &Caller,
        node: Arc<Node>,
        reply: impl FnOnce(Result<(u64, OpenFile)>) + Send + 'static,
    ) {
        let v = variant_of(&node);
        let key = self.recipe(&node, v).map(|recipe| Key {
            version: v.version.clone(),
            spec: recipe.canonical,
        });
        let judged = v.was_judged(caller);
        let (fs, name, uid) = (self.clone(), node.path.clone(), caller.uid);
        self.this_version(caller, node, move |result| {
            let cached = || {
                key.ok()
                    .filter(|_| judged)
                    .and_then(|key| fs.cache().get(&key))
            };
            let found = result.map(|made| made.map(|(out, _)| Ok(out)).or_else(cached));
            let out = match found {
                Ok(Some(Ok(out))) => out,
                Ok(Some(Err(err))) | Err(err) => return reply(Err(err)),
                Ok(None) => {
                    info!(
                        "{}: this version of the source is gone or not judged for this user: ESTALE",
                        name.display()
                    );
                    return reply(Err(Error::Stale(name.display().to_string())));
                }
            };
            let opened = fs.opened(uid, OpenFile::Variant(out));
            reply(opened.map_err(|err| logged(&name, err)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_read_keeps_the_file_and_takes_its_size_and_time() {
        let meta = Meta {
            size: 10,
            blocks: 1,
            atime: (5, 0),
            mtime: (5, 0),
            ctime: (5, 0),
            ..Meta::example(libc::S_IFREG | 0o640, 7, 8)
        };
        assert_eq!(as_read(meta, meta.identity()), meta);
        let later = Identity {
            size: 20,
            mtime_ns: 6_500_000_000,
            birth_ns: 6_500_000_000,
            ..meta.identity()
        };
        let read = as_read(meta, later);
        assert_eq!((read.size, read.mtime, read.uid), (20, (6, 500_000_000), 7));
        assert_eq!(read.identity(), later);
        // Where the file system keeps birth times, the birth time stays.
        let born = Meta {
            btime: (1, 0),
            ..meta
        };
        let later = Identity {
            size: 20,
            mtime_ns: 6_500_000_000,
            ..born.identity()
        };
        assert_eq!(as_read(born, later).identity(), later);
    }
}
