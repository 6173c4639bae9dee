//! Variant lookups in flight, by the directory they are in. The kernel holds a directory's
//! lock (shared) for each lookup in it until the lookup is answered, and a variant's lookup
//! lasts until its conversion ends. A notice that drops an entry of that directory takes the
//! lock exclusively: it waits for them all, and the one thread that sends notices with it
//! (fourth hostile review of 2026-12-03: seen blocked behind one user's queued lookups).
//! The adapter asks [`Lookups::any_in`] and holds a directory's notices while it is busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default, Clone)]
pub struct Lookups(Arc<Mutex<HashMap<u64, usize>>>);

/// One lookup in flight in a directory, counted until dropped (when it is answered).
pub struct InFlight {
    lookups: Lookups,
    dir: u64,
}

impl Lookups {
    fn counts(&self) -> MutexGuard<'_, HashMap<u64, usize>> {
        // Every update is one step: a panic while holding the lock leaves consistent data.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a lookup in directory `dir` until the returned guard is dropped.
    pub fn start(&self, dir: u64) -> InFlight {
        *self.counts().entry(dir).or_insert(0) += 1;
        InFlight {
            lookups: self.clone(),
            dir,
        }
    }

    /// Whether a lookup is in flight in directory `dir`.
    pub fn any_in(&self, dir: u64) -> bool {
        self.counts().contains_key(&dir)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self.lookups.counts();
        if let Some(count) = counts.get_mut(&self.dir) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_busy_while_a_lookup_in_it_is_unanswered() {
        let lookups = Lookups::default();
        let (a, b) = (lookups.start(7), lookups.start(7));
        let other = lookups.start(8);
        assert!(lookups.any_in(7) && lookups.any_in(8) && !lookups.any_in(9));
        drop(a);
        assert!(lookups.any_in(7), "one is still in flight");
        drop((b, other));
        assert!(!lookups.any_in(7) && !lookups.any_in(8));
    }
}
