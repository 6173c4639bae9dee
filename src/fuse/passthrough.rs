//! FUSE passthrough: the kernel reads an open file straight from a file of ours (an
//! original's source file, or the memory file of a large variant) without asking imgfs.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};
use tracing::info;

#[derive(Debug, Clone, Copy)]
pub enum Served {
    Originals,
    Variants,
}

impl Served {
    fn name(self) -> &'static str {
        match self {
            Served::Originals => "originals",
            Served::Variants => "variants",
        }
    }
}

/// How the open files of an inode are read. The kernel takes one way per inode at a time:
/// all through one backing file, or all through the inode's page cache; an open that
/// asks for the other fails with EIO.
enum Opens {
    Backed(Arc<BackingId>, usize),
    Cached(usize),
}

/// Whether passthrough is on, per kind of file, and how each inode's open files are read.
#[derive(Default)]
pub struct Passthrough {
    originals: AtomicBool,
    variants: AtomicBool,
    /// Every open is counted here until its release, so a backing id (and the file it
    /// keeps alive) lives as long as the opens that use it.
    inodes: Mutex<HashMap<u64, Opens>>,
}

impl Passthrough {
    /// Called once the kernel agreed to passthrough at INIT.
    pub fn enable(&self) {
        self.originals.store(true, Ordering::Relaxed);
        self.variants.store(true, Ordering::Relaxed);
    }

    fn switch(&self, served: Served) -> &AtomicBool {
        match served {
            Served::Originals => &self.originals,
            Served::Variants => &self.variants,
        }
    }

    pub fn is_on(&self, served: Served) -> bool {
        self.switch(served).load(Ordering::Relaxed)
    }

    /// Counts an open of `ino` and says how it reads: through a backing id (Some) or
    /// through FUSE and the page cache (None). An inode with open files keeps their way
    /// (every open of an inode reads the same bytes). Otherwise a new id reading `file`,
    /// if there is one, passthrough is on for this kind of file and the kernel takes it;
    /// if the kernel refuses, passthrough is turned off for the kind, logged once.
    /// Each call must be matched by a [`Passthrough::close`] at release.
    pub fn open(
        &self,
        served: Served,
        ino: u64,
        file: Option<&File>,
        reply: &ReplyOpen,
    ) -> Option<Arc<BackingId>> {
        let mut inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        match inodes.get_mut(&ino) {
            Some(Opens::Backed(id, opens)) => {
                *opens += 1;
                return Some(id.clone());
            }
            Some(Opens::Cached(opens)) => {
                *opens += 1;
                return None;
            }
            None => {}
        }
        let id =
            file.filter(|_| self.is_on(served))
                .and_then(|file| match reply.open_backing(file) {
                    Ok(id) => Some(Arc::new(id)),
                    Err(err) => {
                        if self.switch(served).swap(false, Ordering::Relaxed) {
                            info!(
                                "passthrough refused ({err}); serving {} through imgfs",
                                served.name()
                            );
                        }
                        None
                    }
                });
        let opens = match &id {
            Some(id) => Opens::Backed(id.clone(), 1),
            None => Opens::Cached(1),
        };
        inodes.insert(ino, opens);
        id
    }

    /// An open of `ino` was released.
    pub fn close(&self, ino: u64) {
        let mut inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        let left = match inodes.get_mut(&ino) {
            Some(Opens::Backed(_, opens) | Opens::Cached(opens)) => {
                *opens -= 1;
                *opens
            }
            None => return,
        };
        if left == 0 {
            inodes.remove(&ino);
        }
    }
}

/// Replies to an open: through `backing` if it has one, else through the inode's page
/// cache, kept across opens.
pub fn opened(reply: ReplyOpen, fh: u64, backing: Option<&BackingId>) {
    match backing {
        // No FOPEN_KEEP_CACHE: the kernel refuses it with passthrough (EIO).
        Some(backing) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), backing),
        None => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
    }
}
