//! Inode numbers: one per path of the source tree, and one per version of a variant's
//! source under each variant name. The kernel keeps a file's pages and size per inode, so
//! two versions never share one. A name keeps its number while its source is unchanged (a
//! changed source is a new file, as an atomic replace is on disk); numbers are never reused.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use fuser::FileAttr;

use crate::source::Identity;
use crate::spec::Spec;

pub const ROOT: u64 = 1;

#[derive(Debug)]
pub enum Kind {
    /// A directory, file or symlink of the source tree.
    Real,
    /// Boxed: real entries, the many, stay small.
    Variant(Box<VariantNode>),
}

/// How a variant name is made: the same for every version of its source.
#[derive(Debug)]
pub struct Recipe {
    /// The source file, relative to the root (it may be a symlink that stays inside).
    pub source: PathBuf,
    pub spec: Spec,
    pub canonical: String,
}

/// A variant name as made from one version of its source.
#[derive(Debug)]
pub struct VariantNode {
    pub recipe: Arc<Recipe>,
    pub version: Identity,
    /// Where the name lives, to drop the kernel's entry once this version is outdated.
    pub parent: u64,
    pub name: OsString,
    /// What this inode last reported: its size never changes, and it is what is left to
    /// report once the source has moved on and the bytes were evicted.
    pub attr: Mutex<FileAttr>,
    /// Whether the kernel was already told that the name has a newer version.
    pub outdated: AtomicBool,
}

#[derive(Debug)]
pub struct Node {
    /// Relative to the source root; for a variant, its full name.
    pub path: PathBuf,
    pub kind: Kind,
}

/// Real entries and the newest version of each variant name grow with the names looked up
/// (about 200 bytes each) and stay; an older version's entry goes once the kernel forgot it.
#[derive(Debug)]
pub struct Table {
    by_path: HashMap<PathBuf, u64>,
    by_version: HashMap<(PathBuf, Identity), u64>,
    /// The newest version's inode of each variant name: kept, so the number is stable.
    newest: HashMap<PathBuf, u64>,
    nodes: HashMap<u64, Arc<Node>>,
    /// The kernel's lookup count of each variant version inode.
    lookups: HashMap<u64, u64>,
    next: u64,
}

impl Default for Table {
    fn default() -> Self {
        let mut table = Table {
            by_path: HashMap::new(),
            by_version: HashMap::new(),
            newest: HashMap::new(),
            nodes: HashMap::new(),
            lookups: HashMap::new(),
            next: ROOT + 1,
        };
        let root = Arc::new(Node {
            path: PathBuf::new(),
            kind: Kind::Real,
        });
        table.by_path.insert(PathBuf::new(), ROOT);
        table.nodes.insert(ROOT, root);
        table
    }
}

impl Table {
    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.nodes.get(&ino).cloned()
    }

    fn add(&mut self, node: Node) -> (u64, Arc<Node>) {
        let ino = self.next;
        self.next += 1;
        let node = Arc::new(node);
        self.nodes.insert(ino, node.clone());
        (ino, node)
    }

    /// The inode of an entry of the source tree.
    pub fn real(&mut self, path: &Path) -> (u64, Arc<Node>) {
        if let Some(&ino) = self.by_path.get(path) {
            return (ino, self.nodes[&ino].clone());
        }
        let (ino, node) = self.add(Node {
            path: path.to_path_buf(),
            kind: Kind::Real,
        });
        self.by_path.insert(path.to_path_buf(), ino);
        (ino, node)
    }

    /// The inode of variant `path` made from source `version` (created by `make` with its
    /// number if new), counted as one more lookup the kernel holds: call it only for a
    /// LOOKUP that is answered with this inode.
    pub fn looked_up_version(
        &mut self,
        path: &Path,
        version: Identity,
        make: impl FnOnce(u64) -> VariantNode,
    ) -> (u64, Arc<Node>) {
        let key = (path.to_path_buf(), version);
        let (ino, node) = match self.by_version.get(&key) {
            Some(&ino) => (ino, self.nodes[&ino].clone()),
            None => {
                let ino = self.next;
                let made = self.add(Node {
                    path: path.to_path_buf(),
                    kind: Kind::Variant(Box::new(make(ino))),
                });
                self.by_version.insert(key, ino);
                made
            }
        };
        *self.lookups.entry(ino).or_default() += 1;
        if let Some(older) = self.newest.insert(path.to_path_buf(), ino) {
            if older != ino && !self.lookups.contains_key(&older) {
                self.remove(older);
            }
        }
        (ino, node)
    }

    /// The kernel dropped `count` lookups of `ino`: an older variant version goes at zero.
    /// (Real entries and the newest versions are kept: they are bounded by the names.)
    pub fn forget(&mut self, ino: u64, count: u64) {
        let Some(left) = self.lookups.get_mut(&ino) else {
            return;
        };
        *left = left.saturating_sub(count);
        if *left > 0 {
            return;
        }
        self.lookups.remove(&ino);
        let newest = self
            .nodes
            .get(&ino)
            .is_some_and(|node| self.newest.get(&node.path) == Some(&ino));
        if !newest {
            self.remove(ino);
        }
    }

    fn remove(&mut self, ino: u64) {
        if let Some(node) = self.nodes.remove(&ino) {
            if let Kind::Variant(v) = &node.kind {
                self.by_version.remove(&(node.path.clone(), v.version));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Styles;

    fn identity(n: u64) -> Identity {
        Identity {
            dev: 1,
            ino: 1,
            size: n,
            mtime_ns: 0,
        }
    }

    fn node(version: Identity) -> VariantNode {
        let spec = Spec::parse("resize,w_10", &Styles::default()).unwrap();
        VariantNode {
            recipe: Arc::new(Recipe {
                source: "p.jpg".into(),
                canonical: spec.canonical(),
                spec,
            }),
            version,
            parent: ROOT,
            name: "p.jpg@resize,w_10".into(),
            attr: Mutex::new(super::super::attr::variant(
                0,
                &std::fs::metadata(".").unwrap(),
                0,
            )),
            outdated: AtomicBool::new(false),
        }
    }

    #[test]
    fn a_name_keeps_its_number_until_its_source_changes() {
        let mut table = Table::default();
        let name = Path::new("p.jpg@resize,w_10");
        let (a, _) = table.looked_up_version(name, identity(1), |_| node(identity(1)));
        // Forgotten, the newest version stays: the name keeps its number.
        table.forget(a, 1);
        assert_eq!(
            table
                .looked_up_version(name, identity(1), |_| unreachable!())
                .0,
            a
        );
        // A new version is a new inode; the old one goes once the kernel forgets it.
        let (b, _) = table.looked_up_version(name, identity(2), |_| node(identity(2)));
        assert!(b > a);
        assert!(
            table.get(a).is_some(),
            "the kernel still holds a lookup of it"
        );
        table.forget(a, 1);
        assert!(table.get(a).is_none());
        table.forget(b, 1);
        assert!(table.get(b).is_some());
        // An older version no longer held by the kernel goes when a newer one arrives.
        let (c, _) = table.looked_up_version(name, identity(3), |_| node(identity(3)));
        assert!(c > b && table.get(b).is_none());
        // Real entries are not counted, so forgetting them keeps them.
        let (r, _) = table.real(Path::new("p.jpg"));
        table.forget(r, 1);
        assert!(table.get(r).is_some());
    }
}
