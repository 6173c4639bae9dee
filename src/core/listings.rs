//! Directory listings: OPENDIR takes a listing (of a source directory, a whole-tree view or
//! the mount's own directory) and READDIR(PLUS) hands it out, counting the references the
//! kernel takes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::handles::{DirEntry, Listing};
use super::inodes::{Kind, Node};
use super::own_files::OwnFile;
use super::{views, Attr, DirReply, ImgFs, Listed, ROOT};
use crate::error::{Error, Result};
use crate::source::{Caller, Meta};

impl ImgFs {
    /// OPENDIR: lists a source directory now, for `caller`; readdir hands the listing out.
    pub fn opendir(&self, caller: &Caller, ino: u64) -> Result<u64> {
        let node = self.node(ino)?;
        match node.kind {
            Kind::Source { .. } => {}
            Kind::Own(OwnFile::Dir) => {
                return self
                    .handles
                    .open_dir(self.own_listing(caller.uid)?, caller.uid)
            }
            Kind::ViewDir(_) => {
                return self
                    .handles
                    .open_dir(self.view_listing(&node, caller)?, caller.uid)
            }
            _ => {
                return Err(Error::NotFound(format!(
                    "{}: not a directory",
                    node.path.display()
                )))
            }
        }
        let dir = self.source_for(caller, &node)?.open_dir(&node.path)?;
        let io = |e: rustix::io::Errno| Error::io(node.path.display(), e.into());
        let meta = Meta::from_stat(&rustix::fs::fstat(&dir).map_err(io)?);
        let (mut entries, mut charge) = (Vec::new(), self.handles.charge(caller.uid));
        for entry in rustix::fs::Dir::read_from(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            let entry = DirEntry {
                name: name.to_os_string(),
                kind: entry.file_type(),
                source_ino: entry.ino(),
                source: None,
            };
            charge.add(entry.cost(), &node.path)?;
            entries.push(entry);
        }
        // `.` and `..` first, the rest in the order the source file system lists them.
        entries.sort_by_key(|e| !matches!(e.name.as_bytes(), b"." | b".."));
        self.handles.open_dir(
            Listing {
                dir: Some(dir),
                meta,
                entries,
                view: false,
                _charge: charge,
            },
            caller.uid,
        )
    }

    /// READDIR(PLUS) of directory `ino` from `offset`: `reply` takes each entry until it
    /// says it is full. With `plus`, each entry but `.` and `..` that it took is counted as
    /// a reference the kernel holds; in a view, its images are converted first (for
    /// `caller`), a batch at a time, and one that fails is left out. The reply is then
    /// filled on the thread that finishes the batch's last conversion, so the request
    /// thread never waits for one.
    pub fn readdir(
        self: &Arc<Self>,
        caller: &Caller,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
        mut reply: impl DirReply,
    ) {
        let found = self
            .handles
            .dir(fh)
            .ok_or_else(|| Error::NotFound(format!("directory handle {fh}: not open")))
            .and_then(|listing| Ok((listing, self.node(ino)?)));
        let (listing, node) = match found {
            Ok(found) => found,
            Err(err) => return reply.done(Err(err)),
        };
        if !(plus && listing.view) {
            self.fill(
                ino,
                &node,
                &listing,
                offset,
                plus,
                HashMap::new(),
                &mut reply,
            );
            return reply.done(Ok(()));
        }
        let fs = self.clone();
        let held = (node.clone(), listing.clone());
        self.convert_view_batch(
            caller,
            (ino, &node),
            &listing,
            offset as usize,
            move |converted| {
                let (node, listing) = held;
                fs.fill(ino, &node, &listing, offset, plus, converted, &mut reply);
                reply.done(Ok(()))
            },
        );
    }

    /// Hands `listing`'s entries from `offset` to `reply` until it is full; `converted` are
    /// the view images of this batch, by entry index.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        ino: u64,
        node: &Node,
        listing: &Listing,
        offset: u64,
        plus: bool,
        mut converted: HashMap<usize, Result<Attr>>,
        reply: &mut impl DirReply,
    ) {
        let view_plus = plus && listing.view;
        let batch = if view_plus {
            views::VIEW_BATCH
        } else {
            usize::MAX
        };
        let entries = listing.entries.iter().enumerate();
        for (i, entry) in entries.skip(offset as usize).take(batch) {
            let next = i as u64 + 1;
            let (number, attr) = match entry.name.as_bytes() {
                b"." => (ino, Some(Attr::source(ino, &listing.meta))),
                b".." => (
                    self.parent_number(node),
                    Some(Attr::source(ino, &listing.meta)),
                ),
                _ if listing.view => match (&entry.source, plus) {
                    (_, false) => (entry.source_ino, None),
                    (None, true) => {
                        let path = node.path.join(&entry.name);
                        let number = self.inodes().look_up_view_dir(&path);
                        (number, self.view_dir_attr(number, &path).ok())
                    }
                    (Some(_), true) => match converted.remove(&i) {
                        Some(Ok(attr)) => (attr.ino, Some(attr)),
                        _ => continue, // not an image after all: left out
                    },
                },
                _ if listing.dir.is_none() => {
                    let own = OwnFile::named(&entry.name).unwrap_or(OwnFile::Metrics);
                    if plus {
                        let number = self.inodes().look_up_own(&node.path.join(&entry.name), own);
                        (number, self.own_attr(number, own).ok())
                    } else {
                        (entry.source_ino, None)
                    }
                }
                _ if plus => {
                    let Some(dir) = &listing.dir else { continue };
                    let stat = rustix::fs::statat(
                        dir,
                        entry.name.as_os_str(),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    );
                    let Ok(stat) = stat else {
                        continue; // gone since opendir
                    };
                    let meta = Meta::from_stat(&stat);
                    let number = self
                        .inodes()
                        .look_up_source(&node.path.join(&entry.name), &meta);
                    (number, Some(Attr::source(number, &meta)))
                }
                _ => {
                    let number = self
                        .inodes()
                        .source_number(listing.meta.dev, entry.source_ino);
                    (number, None)
                }
            };
            let counted = plus && !matches!(entry.name.as_bytes(), b"." | b"..");
            let full = reply.add(Listed {
                entry,
                ino: number,
                next,
                attr: attr.filter(|_| plus),
            });
            if full {
                if counted {
                    self.forget(number, 1); // not handed over after all
                }
                break;
            }
        }
        // Converted for this reply but not handed over: the kernel holds none of them.
        for attr in converted.into_values().flatten() {
            self.forget(attr.ino, 1);
        }
    }

    fn parent_number(&self, node: &Node) -> u64 {
        let parent = node.path.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() {
            return ROOT;
        }
        match self.root.entry(parent) {
            Ok(found) => self.inodes().source_number(found.meta.dev, found.meta.ino),
            Err(_) => ROOT,
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.release_dir(fh);
    }
}
