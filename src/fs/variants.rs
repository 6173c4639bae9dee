//! Variant names. Each inode is one version of the source converted: the kernel keeps
//! pages and size per inode, so a reader of one version is never cut at another's size.
//! A changed source gets a new inode at the next lookup; the old one keeps its version.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use fuser::{Errno, FileAttr, Generation, INodeNo, Notifier, ReplyAttr, ReplyEntry, ReplyOpen};
use tracing::{debug, info, warn};

use super::handlers::errno;
use super::inodes::{Kind, Node, Recipe, VariantNode};
use super::passthrough::Served;
use super::{attr, ImgFs, OpenFile, Reads};
use crate::cache::{Converted, Key, Stored};
use crate::error::{Error, Result};
use crate::pipeline;
use crate::source::{self, Identity};
use crate::spec::Spec;

/// A conversion and the source version it was made from.
struct Made {
    out: Converted,
    version: Identity,
    /// The source's stat (the variant's mode, owner and times).
    meta: std::fs::Metadata,
}

fn variant_of(node: &Node) -> &VariantNode {
    match &node.kind {
        Kind::Variant(v) => v,
        Kind::Real => unreachable!("a variant node"),
    }
}

impl VariantNode {
    fn key(&self) -> Key {
        Key {
            source: self.version,
            spec: self.recipe.canonical.clone(),
        }
    }

    fn last_attr(&self) -> FileAttr {
        *self.attr.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, attr: FileAttr) {
        *self.attr.lock().unwrap_or_else(|e| e.into_inner()) = attr;
    }

    /// The source has a newer version: the kernel's entry for the name is dropped, so the
    /// next lookup gets the new inode (once per inode; on another thread, since the kernel
    /// may be waiting for the very request that noticed it).
    fn outdate(&self, notifier: &OnceLock<Notifier>) {
        if self.outdated.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(notifier) = notifier.get().cloned() {
            let (parent, name) = (self.parent, self.name.clone());
            debug!(
                "{}: source changed, dropping the entry",
                name.to_string_lossy()
            );
            std::thread::spawn(move || {
                let _ = notifier.inval_entry(INodeNo(parent), &name);
            });
        }
    }
}

impl ImgFs {
    /// The file a variant reads (the source, or its in-root symlink's target) and its stat.
    fn locate(&self, recipe: &Recipe, name: &Path) -> Result<(PathBuf, std::fs::Metadata)> {
        let path = super::names::source_path(&self.root, &recipe.source)?;
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(name.display(), e))?;
        Ok((path, meta))
    }

    /// Gets the conversion of the source version `meta` describes: from the cache, by
    /// joining the conversion in flight, or by starting one on a worker. `then` runs once,
    /// on whichever thread has the answer; the request thread never waits. The answer may
    /// be of a later version if the source changed before it was read.
    fn convert(
        &self,
        recipe: &Recipe,
        name: &Path,
        (path, meta): (PathBuf, std::fs::Metadata),
        then: impl FnOnce(Result<Made>) + Send + 'static,
    ) {
        let stat = Identity::of(&meta);
        let key = Key {
            source: stat,
            spec: recipe.canonical.clone(),
        };
        let source_path = path.clone();
        let waiter = Box::new(move |result: Result<Converted>, version: Identity| {
            // Another version than the stat's: its own stat if the source still is that
            // version, else the earlier stat (only its times can differ).
            let meta = if version == stat {
                meta
            } else {
                std::fs::metadata(&source_path)
                    .ok()
                    .filter(|m| Identity::of(m) == version)
                    .unwrap_or(meta)
            };
            then(result.map(|out| Made { out, version, meta }))
        });
        let Some(job) = self.cache.get_or_start(key, waiter) else {
            return;
        };
        let settings = self.settings.clone();
        let spec: Spec = recipe.spec.clone();
        let name = name.display().to_string();
        self.workers.spawn(move || {
            let started = Instant::now();
            let _span = tracing::debug_span!("convert", %name).entered();
            let mut read = None;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let (bytes, version) = source::read(&path, &settings.limits)?;
                read = Some(version);
                pipeline::convert_into(&bytes, &spec, &settings, Stored::new)
            }))
            .unwrap_or_else(|_| Err(Error::Decode("the conversion panicked".into())));
            match &result {
                Ok(out) => info!(
                    "converted {name} in {} ms: {} bytes",
                    started.elapsed().as_millis(),
                    out.len()
                ),
                Err(err) if err.is_user_error() => info!("{name}: {err}"),
                Err(err) => warn!("{name}: {err}"),
            }
            // Kept under the version actually read, so a key never maps to another
            // version's bytes.
            match read {
                Some(version) => job.finish_from(version, result),
                None => job.finish(result),
            }
            super::return_freed_memory();
        });
    }

    /// LOOKUP of a variant name: the inode of the version converted now, with its size.
    pub(super) fn lookup_variant(
        &self,
        parent: u64,
        parent_path: &Path,
        name: &OsStr,
        (source, spec_text): (PathBuf, String),
        reply: ReplyEntry,
    ) {
        let path = parent_path.join(name);
        let spec = match Spec::parse(&spec_text, &self.styles) {
            Ok(spec) => spec,
            Err(err) => {
                info!("{}: {err}", path.display());
                return reply.error(errno(&err));
            }
        };
        let recipe = Arc::new(Recipe {
            source,
            canonical: spec.canonical(),
            spec,
        });
        let located = match self.locate(&recipe, &path) {
            Ok(found) => found,
            Err(err) => {
                info!("{}: {err}", path.display());
                return reply.error(errno(&err));
            }
        };
        let (inodes, ttl, name) = (self.inodes.clone(), self.ttl, name.to_os_string());
        let held = recipe.clone();
        self.convert(&held, &path.clone(), located, move |result| {
            let made = match result {
                Ok(made) => made,
                Err(err) => return reply.error(errno(&err)),
            };
            let attr_of = |ino| attr::variant(ino, &made.meta, made.out.len());
            let (ino, node) = inodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .looked_up_version(&path, made.version, |ino| VariantNode {
                    recipe,
                    version: made.version,
                    parent,
                    name,
                    attr: Mutex::new(attr_of(ino)),
                    outdated: AtomicBool::new(false),
                });
            let attr = attr_of(ino);
            variant_of(&node).remember(attr);
            reply.entry(&ttl, &attr, Generation(0));
        });
    }

    /// The source's current stat, if it still is `v`'s version.
    fn current(&self, node: &Node, v: &VariantNode) -> Option<(PathBuf, std::fs::Metadata)> {
        let found = self.locate(&v.recipe, &node.path).ok();
        let current = found.filter(|(_, meta)| Identity::of(meta) == v.version);
        if current.is_none() {
            v.outdate(&self.notifier);
        }
        current
    }

    /// Converts `node`'s own version while the source still is that version; Ok(None) once
    /// it moved on (and the kernel's entry for the name is dropped). `then` runs once.
    fn this_version(
        &self,
        node: Arc<Node>,
        then: impl FnOnce(Result<Option<Made>>) + Send + 'static,
    ) {
        let v = variant_of(&node);
        let Some(located) = self.current(&node, v) else {
            return then(Ok(None));
        };
        let (notifier, held) = (self.notifier.clone(), node.clone());
        self.convert(&v.recipe, &node.path, located, move |result| {
            let v = variant_of(&held);
            then(result.map(|made| {
                if made.version == v.version {
                    return Some(made);
                }
                v.outdate(&notifier);
                None
            }))
        });
    }

    /// GETATTR: always this version's attributes, reconverted if evicted while current;
    /// once the source moved on, what the inode last reported.
    pub(super) fn getattr_variant(&self, ino: u64, node: Arc<Node>, reply: ReplyAttr) {
        let (ttl, held) = (self.ttl, node.clone());
        self.this_version(node, move |result| {
            let v = variant_of(&held);
            match result {
                Ok(Some(made)) => {
                    let attr = attr::variant(ino, &made.meta, made.out.len());
                    v.remember(attr);
                    reply.attr(&ttl, &attr)
                }
                Ok(None) => reply.attr(&ttl, &v.last_attr()),
                Err(err) => reply.error(errno(&err)),
            }
        });
    }

    /// OPEN: this version's bytes, pinned. Once the source moved on they may only come
    /// from the cache; if evicted, ESTALE: the kernel then looks the name up again and
    /// opens the new version (open(2) retries once by itself), so no reader ever gets
    /// bytes that differ from the inode's size.
    pub(super) fn open_variant(&self, ino: u64, node: Arc<Node>, reply: ReplyOpen) {
        let v = variant_of(&node);
        let (files, cache, key) = (self.files.clone(), self.cache.clone(), v.key());
        let passthrough = self.passthrough.clone();
        let name = node.path.display().to_string();
        self.this_version(node, move |result| {
            let out = match result.map(|made| made.map(|m| Ok(m.out)).or_else(|| cache.get(&key))) {
                Ok(Some(Ok(out))) => out,
                Ok(Some(Err(err))) | Err(err) => return reply.error(errno(&err)),
                Ok(None) => {
                    info!("{name}: this version of the source is gone from the cache: ESTALE");
                    return reply.error(Errno::ESTALE);
                }
            };
            let backing = passthrough.open(Served::Variants, ino, out.memory_file(), &reply);
            let fh = files.insert(OpenFile {
                ino,
                reads: Reads::Variant(out),
            });
            super::passthrough::opened(reply, fh, backing.as_deref());
        });
    }
}
