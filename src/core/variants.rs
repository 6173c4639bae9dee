//! Variant names. Each inode is one version of a variant's inputs converted: the kernel
//! keeps pages and size per inode, so a reader of one version is never cut at another's
//! size. A changed input gets a new inode at the next lookup; the old one keeps its version.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, info};

use super::inodes::{Kind, Node, Recipe, VariantNode};
use super::{logged, Attr, ImgFs, OpenFile};
use crate::cache::{Converted, Key};
use crate::convert::Inputs;
use crate::error::{Error, Result};
use crate::source::{Caller, Found, Identity, Links, Meta};
use crate::spec::Spec;

fn variant_of(node: &Node) -> &VariantNode {
    match &node.kind {
        Kind::Variant(v) => v,
        Kind::Source { .. } => unreachable!("a variant node"),
    }
}

impl VariantNode {
    fn key(&self) -> Key {
        Key {
            version: self.version.clone(),
            spec: self.recipe.canonical.clone(),
        }
    }

    fn last_attr(&self) -> Attr {
        *self.attr.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, attr: Attr) {
        *self.attr.lock().unwrap_or_else(|e| e.into_inner()) = attr;
    }
}

/// The source's status as of `read`, a version read after `meta` was taken (only its size
/// and times can differ: the file is the same inode).
fn as_read(meta: Meta, read: Identity) -> Meta {
    if meta.identity() == read {
        return meta;
    }
    let secs = read.mtime_ns.div_euclid(1_000_000_000) as i64;
    let nanos = read.mtime_ns.rem_euclid(1_000_000_000) as u32;
    Meta {
        size: read.size,
        mtime: (secs, nanos),
        ctime: (secs, nanos),
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
        reply: impl FnOnce(Result<Attr>) + Send + 'static,
    ) {
        let spec = match Spec::parse(&spec_text, &self.styles) {
            Ok(spec) => spec,
            Err(err) => return reply(Err(logged(path, err))),
        };
        let recipe = Arc::new(Recipe {
            source,
            canonical: spec.canonical(),
            spec: Arc::new(spec),
        });
        let inputs = match Inputs::find(&self.root, found, &recipe.spec, caller) {
            Ok(inputs) => inputs,
            Err(err) => return reply(Err(logged(path, err))),
        };
        let meta = inputs.source.meta;
        let (fs, path, name) = (self.clone(), path.to_path_buf(), name.to_os_string());
        let held = recipe.clone();
        self.converter.convert(
            &path.clone(),
            &recipe.spec,
            &recipe.canonical,
            inputs,
            move |result, version| {
                let out = match result {
                    Ok(out) => out,
                    Err(err) => return reply(Err(err)),
                };
                let meta = as_read(meta, version.source);
                let attr_of = |ino| Attr::variant(ino, &meta, out.len());
                let (ino, node) = fs
                    .inodes()
                    .look_up_variant(&path, version, |ino| VariantNode {
                        recipe: held,
                        version: version.clone(),
                        parent,
                        name,
                        attr: Mutex::new(attr_of(ino)),
                        outdated: AtomicBool::new(false),
                    });
                let attr = attr_of(ino);
                variant_of(&node).remember(attr);
                reply(Ok(attr))
            },
        );
    }

    /// The inputs of `v` as they are now, found for `caller`, if they still are `v`'s
    /// version; None once any moved on (and the kernel's entry for the name is dropped).
    fn current_inputs(&self, caller: &Caller, v: &VariantNode) -> Result<Option<Inputs>> {
        let found = self
            .root
            .resolve(&v.recipe.source, Links::Last, caller)
            .and_then(|found| Inputs::find(&self.root, found, &v.recipe.spec, caller));
        match found {
            Ok(inputs) if inputs.version() == v.version => Ok(Some(inputs)),
            Err(err @ Error::Denied(_)) => Err(err),
            _ => {
                self.outdate(v);
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
        let inputs = match self.current_inputs(caller, v) {
            Ok(Some(inputs)) => inputs,
            Ok(None) => return then(Ok(None)),
            Err(err) => return then(Err(logged(&node.path, err))),
        };
        let meta = inputs.source.meta;
        let (fs, held) = (self.clone(), node.clone());
        let recipe = v.recipe.clone();
        self.converter.convert(
            &node.path,
            &recipe.spec,
            &recipe.canonical,
            inputs,
            move |result, version| {
                let v = variant_of(&held);
                then(result.map(|out| {
                    if *version == v.version {
                        return Some((out, meta));
                    }
                    fs.outdate(v);
                    None
                }))
            },
        );
    }

    /// The inputs of `v` have a newer version: the kernel's entry for the name is dropped,
    /// so the next lookup gets the new inode (once per inode).
    fn outdate(&self, v: &VariantNode) {
        if v.outdated.swap(true, Ordering::Relaxed) {
            return;
        }
        debug!(
            "{}: an input changed, dropping the entry",
            v.name.to_string_lossy()
        );
        if let Some(kernel) = self.kernel.get() {
            kernel.forget_entry(v.parent, &v.name);
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
    /// from the cache; if evicted, ESTALE: the kernel then looks the name up again and
    /// opens the new version (open(2) retries once by itself), so no reader ever gets
    /// bytes that differ from the inode's size.
    pub(super) fn open_variant(
        self: &Arc<Self>,
        caller: &Caller,
        node: Arc<Node>,
        reply: impl FnOnce(Result<(u64, OpenFile)>) + Send + 'static,
    ) {
        let key = variant_of(&node).key();
        let (fs, name) = (self.clone(), node.path.clone());
        self.this_version(caller, node, move |result| {
            let found = result.map(|made| {
                made.map(|(out, _)| Ok(out))
                    .or_else(|| fs.cache().get(&key))
            });
            let out = match found {
                Ok(Some(Ok(out))) => out,
                Ok(Some(Err(err))) | Err(err) => return reply(Err(err)),
                Ok(None) => {
                    info!(
                        "{}: this version of the source is gone from the cache: ESTALE",
                        name.display()
                    );
                    return reply(Err(Error::Stale(name.display().to_string())));
                }
            };
            reply(Ok(fs.opened(OpenFile::Variant(out))))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_read_keeps_the_file_and_takes_its_size_and_time() {
        let meta = Meta {
            dev: 1,
            ino: 2,
            mode: libc::S_IFREG | 0o640,
            nlink: 1,
            uid: 7,
            gid: 8,
            rdev: 0,
            size: 10,
            blksize: 4096,
            blocks: 1,
            atime: (5, 0),
            mtime: (5, 0),
            ctime: (5, 0),
        };
        assert_eq!(as_read(meta, meta.identity()), meta);
        let later = Identity {
            size: 20,
            mtime_ns: 6_500_000_000,
            ..meta.identity()
        };
        let read = as_read(meta, later);
        assert_eq!((read.size, read.mtime, read.uid), (20, (6, 500_000_000), 7));
        assert_eq!(read.identity(), later);
    }
}
