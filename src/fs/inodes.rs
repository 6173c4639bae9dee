//! Inode numbers: one per path (original or variant name), stable while mounted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::source::Identity;
use crate::spec::Spec;

pub const ROOT: u64 = 1;

#[derive(Debug)]
pub enum Kind {
    /// A directory, file or symlink of the source tree.
    Real,
    Variant(VariantNode),
}

#[derive(Debug)]
pub struct VariantNode {
    /// The source file, relative to the root (it may be a symlink that stays inside).
    pub source: PathBuf,
    pub spec: Spec,
    pub canonical: String,
    /// The source version last served, to notice changes and drop the kernel's pages.
    pub last_served: Mutex<Option<Identity>>,
    /// When a change of the source version was last noticed: until the kernel's cached
    /// size of the old version has surely expired, opens bypass the page cache.
    pub changed_at: Mutex<Option<std::time::Instant>>,
}

impl VariantNode {
    /// Whether the source changed less than `window` ago.
    pub fn changed_within(&self, window: std::time::Duration) -> bool {
        self.changed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }
}

#[derive(Debug)]
pub struct Node {
    /// Relative to the source root; for a variant, its full name.
    pub path: PathBuf,
    pub kind: Kind,
}

/// Grows with the names looked up (about 200 bytes each); entries are never reused for
/// another path, so an inode number always means the same name.
#[derive(Debug)]
pub struct Table {
    by_path: HashMap<PathBuf, u64>,
    nodes: HashMap<u64, Arc<Node>>,
    next: u64,
}

impl Default for Table {
    fn default() -> Self {
        let mut table = Table {
            by_path: HashMap::new(),
            nodes: HashMap::new(),
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

    /// The inode of `path`, created with `kind()` if the path is new (or changed between
    /// original and variant: a real file created under a variant's name wins).
    pub fn intern(
        &mut self,
        path: &Path,
        variant: bool,
        kind: impl FnOnce() -> Kind,
    ) -> (u64, Arc<Node>) {
        if let Some(&ino) = self.by_path.get(path) {
            let node = self.nodes[&ino].clone();
            if matches!(node.kind, Kind::Variant(_)) == variant {
                return (ino, node);
            }
        }
        let ino = self.next;
        self.next += 1;
        let node = Arc::new(Node {
            path: path.to_path_buf(),
            kind: kind(),
        });
        self.by_path.insert(path.to_path_buf(), ino);
        self.nodes.insert(ino, node.clone());
        (ino, node)
    }
}
