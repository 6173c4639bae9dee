//! Inode numbers and the nodes behind them, held exactly as long as the kernel holds them.
//!
//! Every LOOKUP answered (and every readdirplus entry but `.` and `..`) is one reference the
//! kernel holds; FORGET gives them back, and a node with none left is dropped, so the table
//! is as large as the kernel's own cache of the mount, however many names are asked for.
//! Numbers are derived, not counted, so a name gets the same number again after it was
//! forgotten: a source entry's is its inode number on the source file system (entries on
//! another device, or numbers out of range, are hashed into their own range), a variant's
//! is a hash of its name and the version of its inputs. The kernel keeps a file's pages and
//! size per inode, so each version of a variant is an inode of its own; a changed source
//! makes its variants new files, as an atomic replace does on disk.

use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::attr::Attr;
use super::own_files::OwnFile;
use super::views::ViewDirNode;
use crate::cache::Version;
use crate::source::Meta;

pub const ROOT: u64 = 1;
/// Variants' numbers have the top bit set.
const VARIANT: u64 = 1 << 63;
/// Source entries whose own number cannot be used have the next bit set.
const HASHED_SOURCE: u64 = 1 << 62;

#[derive(Debug)]
pub enum Kind {
    /// A directory, file or symlink of the source tree: its device and inode there.
    Source { dev: u64, ino: u64 },
    /// Boxed: source entries, the many, stay small.
    Variant(Box<VariantNode>),
    /// A file or directory of the mount's own (`.imgfs/`).
    Own(OwnFile),
    /// A directory of a whole-tree view (`@style,NAME/…`).
    ViewDir(Box<ViewDirNode>),
}

/// A variant name as made from one version of its inputs. Kept small (the kernel may hold
/// many): the source and the spec are read again from the node's path when needed.
#[derive(Debug)]
pub struct VariantNode {
    /// How many bytes of the name are the source's (before the `@` that starts the spec).
    pub source_len: usize,
    /// In a whole-tree view, the source's name (the name shown has another extension).
    pub view_source: Option<OsString>,
    pub version: Version,
    /// Where the name lives, to drop the kernel's entry once this version is outdated.
    pub parent: u64,
    /// What this inode last reported: its size never changes, and it is what is left to
    /// report once the source has moved on and the bytes were evicted.
    pub attr: Mutex<Attr>,
    /// Whether the kernel was already told that the name has a newer version.
    pub outdated: AtomicBool,
    /// The users (uid, gid) allowed to read this version's inputs when they were judged.
    pub readers: Mutex<Vec<(u32, u32)>>,
}

#[derive(Debug)]
pub struct Node {
    /// Relative to the source root; for a variant, its full name.
    pub path: PathBuf,
    pub kind: Kind,
}

impl Node {
    /// Whether `self` is the node a lookup of `path` found as `kind` (else two numbers
    /// collided). A source entry is its file, whatever its path (a hard link, a rename).
    fn is(&self, path: &Path, kind: &Kind) -> bool {
        match (&self.kind, kind) {
            (Kind::Source { dev, ino }, Kind::Source { dev: d, ino: i }) => (dev, ino) == (d, i),
            (Kind::Variant(held), Kind::Variant(asked)) => {
                self.path == path && held.version == asked.version
            }
            (Kind::Own(held), Kind::Own(asked)) => held == asked,
            (Kind::ViewDir(_), Kind::ViewDir(_)) => self.path == path,
            _ => false,
        }
    }
}

struct Held {
    node: Arc<Node>,
    /// References the kernel holds; the root's never drop.
    lookups: u64,
}

pub struct Table {
    nodes: HashMap<u64, Held>,
    root_dev: u64,
}

fn hash_of(value: impl Hash) -> u64 {
    // SipHash with fixed keys: the same number for the same name in every run.
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Table {
    pub fn new(root: &Meta) -> Table {
        let node = Arc::new(Node {
            path: PathBuf::new(),
            kind: Kind::Source {
                dev: root.dev,
                ino: root.ino,
            },
        });
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Held { node, lookups: 1 });
        Table {
            nodes,
            root_dev: root.dev,
        }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.nodes.get(&ino).map(|held| held.node.clone())
    }

    /// Nodes held (the root included).
    pub fn held(&self) -> usize {
        self.nodes.len()
    }

    /// The number a source entry of device `dev` and inode `ino` gets.
    pub fn source_number(&self, dev: u64, ino: u64) -> u64 {
        if dev == self.root_dev && ino > ROOT && ino < HASHED_SOURCE {
            ino
        } else {
            HASHED_SOURCE | (hash_of((dev, ino)) & (HASHED_SOURCE - 1))
        }
    }

    /// The inode of the source entry at `path` with status `meta`, counted as one more
    /// reference the kernel holds: call it only for a reply that hands the number over.
    pub fn look_up_source(&mut self, path: &Path, meta: &Meta) -> u64 {
        let kind = Kind::Source {
            dev: meta.dev,
            ino: meta.ino,
        };
        let first = self.source_number(meta.dev, meta.ino);
        let next = |n: u64| HASHED_SOURCE | ((n + 1) & (HASHED_SOURCE - 1));
        let (ino, _) = self.look_up(first, next, path, kind);
        ino
    }

    /// The inode of the mount's own file `own` at `path`, counted as one more reference
    /// the kernel holds. Their numbers sit at the top of the variants' range.
    pub fn look_up_own(&mut self, path: &Path, own: OwnFile) -> u64 {
        let first = u64::MAX - own as u64;
        let next = |n: u64| VARIANT | (n.wrapping_sub(1) & !VARIANT);
        self.look_up(first, next, path, Kind::Own(own)).0
    }

    /// The inode of the view directory at `path`, counted as one more reference the
    /// kernel holds. Numbered like variants, by a hash of the path.
    pub fn look_up_view_dir(&mut self, path: &Path) -> u64 {
        let first = VARIANT | (hash_of(path) & !VARIANT);
        let next = |n: u64| VARIANT | ((n + 1) & !VARIANT);
        let kind = Kind::ViewDir(Box::default());
        self.look_up(first, next, path, kind).0
    }

    /// The inode of variant `path` made from inputs of `version` (created by `make` with
    /// its number if new), counted as one more reference the kernel holds.
    pub fn look_up_variant(
        &mut self,
        path: &Path,
        version: &Version,
        make: impl FnOnce(u64) -> VariantNode,
    ) -> (u64, Arc<Node>) {
        let first = VARIANT | (hash_of((path, version)) & !VARIANT);
        let next = |n: u64| VARIANT | ((n + 1) & !VARIANT);
        // Probe with the version alone; the node is made once the number is known.
        let mut ino = first;
        loop {
            match self.nodes.get_mut(&ino) {
                Some(held) => {
                    let same = held.node.path == path
                        && matches!(&held.node.kind, Kind::Variant(v) if v.version == *version);
                    if same {
                        held.lookups += 1;
                        return (ino, held.node.clone());
                    }
                    ino = next(ino);
                }
                None => {
                    let kind = Kind::Variant(Box::new(make(ino)));
                    return self.look_up(ino, next, path, kind);
                }
            }
        }
    }

    /// Finds or inserts the node `kind` at `path`, probing from `ino` with `next` past
    /// numbers held by other nodes, and counts one reference.
    fn look_up(
        &mut self,
        mut ino: u64,
        next: impl Fn(u64) -> u64,
        path: &Path,
        kind: Kind,
    ) -> (u64, Arc<Node>) {
        loop {
            match self.nodes.get_mut(&ino) {
                Some(held) if held.node.is(path, &kind) => {
                    held.lookups += 1;
                    if held.node.path != path && ino != ROOT {
                        // A hard link or a rename: requests use the path seen last.
                        held.node = Arc::new(Node {
                            path: path.to_path_buf(),
                            kind,
                        });
                    }
                    return (ino, held.node.clone());
                }
                Some(_) => ino = next(ino),
                None => {
                    let node = Arc::new(Node {
                        path: path.to_path_buf(),
                        kind,
                    });
                    self.nodes.insert(
                        ino,
                        Held {
                            node: node.clone(),
                            lookups: 1,
                        },
                    );
                    return (ino, node);
                }
            }
        }
    }

    /// The kernel dropped `count` references to `ino`: the node goes at zero (true).
    pub fn forget(&mut self, ino: u64, count: u64) -> bool {
        if ino == ROOT {
            return false;
        }
        let Some(held) = self.nodes.get_mut(&ino) else {
            return false;
        };
        held.lookups = held.lookups.saturating_sub(count);
        held.lookups == 0 && self.nodes.remove(&ino).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Identity;

    fn meta(dev: u64, ino: u64) -> Meta {
        Meta {
            dev,
            ino,
            ..Meta::example(libc::S_IFREG | 0o644, 0, 0)
        }
    }

    fn version(n: u64) -> Version {
        Version::of(Identity {
            dev: 1,
            ino: 1,
            size: n,
            mtime_ns: 0,
            birth_ns: 0,
        })
    }

    fn node(version: Version) -> VariantNode {
        VariantNode {
            source_len: "p.jpg".len(),
            view_source: None,
            version,
            parent: ROOT,
            attr: Mutex::new(Attr::variant(0, &meta(1, 5), 0)),
            outdated: AtomicBool::new(false),
            readers: Mutex::default(),
        }
    }

    #[test]
    fn nodes_live_as_long_as_the_kernel_holds_them_and_numbers_come_back() {
        let mut table = Table::new(&meta(1, 2));
        let name = Path::new("p.jpg@resize,w_10");
        let (a, _) = table.look_up_variant(name, &version(1), |_| node(version(1)));
        let (again, _) = table.look_up_variant(name, &version(1), |_| unreachable!());
        assert_eq!(a, again);
        table.forget(a, 1);
        assert!(table.get(a).is_some(), "one reference is left");
        table.forget(a, 1);
        assert!(table.get(a).is_none());
        assert_eq!(table.held(), 1, "only the root is left");
        // Forgotten and looked up again, the name has the same number.
        let (back, _) = table.look_up_variant(name, &version(1), |_| node(version(1)));
        assert_eq!(back, a);
        // A new version of the source is another inode.
        let (b, _) = table.look_up_variant(name, &version(2), |_| node(version(2)));
        assert_ne!(b, a);
        assert!(a & VARIANT != 0 && b & VARIANT != 0);
        // Source entries are their own inode numbers, and go when forgotten too.
        let s = table.look_up_source(Path::new("p.jpg"), &meta(1, 77));
        assert_eq!(s, 77);
        table.forget(s, 1);
        assert!(table.get(s).is_none());
        // The root is never forgotten.
        table.forget(ROOT, 100);
        assert!(table.get(ROOT).is_some());
    }

    #[test]
    fn numbers_that_cannot_be_used_are_hashed_and_collisions_probe() {
        let mut table = Table::new(&meta(1, 2));
        // Another device, and inode 1 (the mount's root number), are hashed.
        let other = table.look_up_source(Path::new("mnt"), &meta(9, 77));
        let one = table.look_up_source(Path::new("one"), &meta(1, 1));
        for n in [other, one] {
            assert!(n & HASHED_SOURCE != 0 && n & VARIANT == 0, "{n:x}");
        }
        // A hard link is the same inode; the path seen last serves requests.
        let a = table.look_up_source(Path::new("a"), &meta(1, 50));
        let b = table.look_up_source(Path::new("b"), &meta(1, 50));
        assert_eq!(a, b);
        assert_eq!(table.get(a).unwrap().path, Path::new("b"));
        // Two files that hash to one number get two numbers.
        let first = table.source_number(9, 1234);
        table.nodes.insert(
            first,
            Held {
                node: Arc::new(Node {
                    path: "squatter".into(),
                    kind: Kind::Source { dev: 9, ino: 4321 },
                }),
                lookups: 1,
            },
        );
        let probed = table.look_up_source(Path::new("real"), &meta(9, 1234));
        assert_ne!(probed, first);
        assert_eq!(table.get(probed).unwrap().path, Path::new("real"));
    }
}
