//! FUSE passthrough: the kernel reads an open file straight from a file of ours (an
//! original's source file, or the memory file of a large variant) without asking imgfs.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::{BackingId, ReplyOpen};
use tracing::info;

#[derive(Debug, Clone, Copy)]
pub(super) enum Served {
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

/// Whether passthrough is on, per kind of file, and the backing ids of open files.
#[derive(Default)]
pub(super) struct Passthrough {
    originals: AtomicBool,
    variants: AtomicBool,
    /// One id per inode, with its open count: the kernel refuses a second backing file
    /// for an inode while files of it are open (EBUSY), and keeps the id's file alive
    /// until the count falls to 0.
    ids: Mutex<HashMap<u64, (Arc<BackingId>, usize)>>,
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

    /// The backing id for an open of `ino`: the inode's id if it has one (every open of
    /// an inode reads the same bytes, and the kernel takes no second one), else a new one
    /// reading `file`. None if there is neither, if passthrough is off for this kind of
    /// file, or if the kernel refused it (then it is turned off, logged once, and imgfs
    /// serves the reads).
    pub fn open(
        &self,
        served: Served,
        ino: u64,
        file: Option<&File>,
        reply: &ReplyOpen,
    ) -> Option<Arc<BackingId>> {
        if !self.is_on(served) {
            return None;
        }
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, opens)) = ids.get_mut(&ino) {
            *opens += 1;
            return Some(id.clone());
        }
        match reply.open_backing(file?) {
            Ok(id) => {
                let id = Arc::new(id);
                ids.insert(ino, (id.clone(), 1));
                Some(id)
            }
            Err(err) => {
                if self.switch(served).swap(false, Ordering::Relaxed) {
                    info!(
                        "passthrough refused ({err}); serving {} through imgfs",
                        served.name()
                    );
                }
                None
            }
        }
    }

    /// An open that got a backing id from [`Passthrough::open`] was released.
    pub fn close(&self, ino: u64) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, opens)) = ids.get_mut(&ino) {
            *opens -= 1;
            if *opens == 0 {
                ids.remove(&ino);
            }
        }
    }
}
