//! Converted variants in memory: an LRU bounded in bytes, with single-flight conversions;
//! and under it, in [`disk`], the tier that keeps them across restarts.
//!
//! Callers never block here: a request either finds its bytes, or joins the waiters of the
//! one conversion in flight for its key, or is told to start that conversion (or to fetch
//! it from the disk tier first: the converter asks the tiers in order).

pub mod disk;
mod stored;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::source::Identity;

/// The identities of every file a variant is made from: its source, then the watermark
/// images its spec names, in the spec's order. When any changes, the variant is stale.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub source: Identity,
    pub marks: Vec<Identity>,
}

impl Version {
    pub fn of(source: Identity) -> Version {
        Version {
            source,
            marks: Vec::new(),
        }
    }
}

/// A variant: which version of its inputs, converted by which canonical spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub version: Version,
    pub spec: String,
}

pub use stored::{Stored, MEMORY_FILE_MIN};

pub type Converted = Arc<Stored>;
/// Gets the result and the version of the inputs it was made from (not always the key's:
/// see [`Job::finish_from`]).
pub type Waiter = Box<dyn FnOnce(Result<Converted>, &Version) + Send>;

enum Entry {
    Ready(Converted),
    /// A failed conversion is remembered briefly so a broken file is not reconverted per stat.
    Failed(Error, Instant),
}

/// Bookkeeping per entry besides its bytes and the key's heap parts (the key, list links,
/// hash slot, the Arc and the Stored header), rounded up.
const ENTRY_OVERHEAD: u64 = 256;

fn entry_cost(key: &Key, entry: &Entry) -> u64 {
    let bytes = match entry {
        Entry::Ready(out) => out.len(),
        Entry::Failed(err, _) => err.to_string().len() as u64,
    };
    let key_heap = key.spec.capacity() + key.version.marks.capacity() * size_of::<Identity>();
    bytes + key_heap as u64 + ENTRY_OVERHEAD
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Conversions run (one per distinct key and source version, single-flight; counted by
    /// the converter, so answers from the disk tier are not among them).
    pub conversions: AtomicU64,
    /// Requests answered from memory.
    pub hits: AtomicU64,
    /// Requests memory could not answer: they started a job or joined the one in flight.
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
}

struct Inner {
    entries: LruCache<Key, Entry>,
    bytes: u64,
    pending: HashMap<Key, Vec<Waiter>>,
}

pub struct Cache {
    inner: Mutex<Inner>,
    capacity: u64,
    error_ttl: Duration,
    pub stats: Stats,
}

/// Proof that the holder must run the conversion for `key` and hand back its result.
/// Dropped unfinished (a worker that never ran it, a panic), it fails its waiters with
/// EIO, so no request for the key waits forever.
#[must_use = "the conversion must be run and finished, or its waiters get EIO"]
pub struct Job {
    cache: Arc<Cache>,
    key: Key,
    finished: bool,
}

impl Job {
    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn finish(self, result: Result<Stored>) {
        let read = self.key.version.clone();
        self.finish_from(read, result.map(Arc::new));
    }

    /// Like [`Job::finish`] for a result made from inputs of version `read`: if they
    /// changed between the stat that made the key and the read, the waiters still get the
    /// result (told its version), but it is kept under that version, never under the key's.
    pub fn finish_from(mut self, read: Version, result: Result<Converted>) {
        self.finished = true;
        let key = Key {
            version: read,
            spec: self.key.spec.clone(),
        };
        self.cache.finish(&self.key, key, result);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.finished {
            self.cache.abandon(&self.key);
        }
    }
}

impl Cache {
    pub fn new(capacity: u64, error_ttl: Duration) -> Arc<Cache> {
        Arc::new(Cache {
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                bytes: 0,
                pending: HashMap::new(),
            }),
            capacity,
            error_ttl,
            stats: Stats::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one step).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key`, if it is ready or failed recently (counted as a hit or a miss).
    pub fn get(&self, key: &Key) -> Option<Result<Converted>> {
        let found = self.find(key);
        let counter = match found {
            Some(Ok(_)) => &self.stats.hits,
            _ => &self.stats.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn find(&self, key: &Key) -> Option<Result<Converted>> {
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some(Entry::Ready(out)) => Some(Ok(out.clone())),
            Some(Entry::Failed(err, at)) if at.elapsed() < self.error_ttl => Some(Err(err.clone())),
            Some(Entry::Failed(..)) => {
                if let Some(old) = inner.entries.pop(key) {
                    inner.bytes -= entry_cost(key, &old);
                }
                None
            }
            None => None,
        }
    }

    /// Answers `waiter` now if the entry exists, else queues it behind the conversion in
    /// flight, else returns the [`Job`] the caller must run.
    pub fn get_or_start(self: &Arc<Self>, key: Key, waiter: Waiter) -> Option<Job> {
        if let Some(found) = self.find(&key) {
            if found.is_ok() {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
            }
            waiter(found, &key.version);
            return None;
        }
        let mut inner = self.lock();
        // Re-check under the lock: the conversion may have finished in between.
        if let Some(Entry::Ready(out)) = inner.entries.get(&key) {
            let out = out.clone();
            drop(inner);
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            waiter(Ok(out), &key.version);
            return None;
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(waiters) = inner.pending.get_mut(&key) {
            waiters.push(waiter);
            return None;
        }
        inner.pending.insert(key.clone(), vec![waiter]);
        Some(Job {
            cache: self.clone(),
            key,
            finished: false,
        })
    }

    /// The conversion for `pending` will not run: its waiters get EIO, nothing is kept.
    fn abandon(&self, pending: &Key) {
        let waiters = self.lock().pending.remove(pending).unwrap_or_default();
        let err = Error::Io {
            errno: libc::EIO,
            message: "the conversion was dropped before it finished".into(),
        };
        for waiter in waiters {
            waiter(Err(err.clone()), &pending.version);
        }
    }

    /// Answers the waiters of `pending` and keeps the result under `key`.
    fn finish(&self, pending: &Key, key: Key, result: Result<Converted>) {
        let key = &key;
        let waiters = {
            let mut inner = self.lock();
            let waiters = inner.pending.remove(pending).unwrap_or_default();
            let entry = match &result {
                Ok(out) => Entry::Ready(out.clone()),
                Err(err) => Entry::Failed(err.clone(), Instant::now()),
            };
            let cost = entry_cost(key, &entry);
            // An entry larger than the whole budget is served to its waiters but not kept.
            if cost <= self.capacity {
                if let Some(old) = inner.entries.put(key.clone(), entry) {
                    inner.bytes -= entry_cost(key, &old);
                }
                inner.bytes += cost;
                while inner.bytes > self.capacity {
                    let Some((old_key, old)) = inner.entries.pop_lru() else {
                        break;
                    };
                    inner.bytes -= entry_cost(&old_key, &old);
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
            waiters
        };
        for waiter in waiters {
            waiter(result.clone(), &key.version);
        }
    }

    /// Bytes held, bookkeeping included; never above the capacity.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A key for tests: source inode `n`, the rest fixed.
#[cfg(test)]
pub(crate) fn test_key(n: u64) -> Key {
    Key {
        version: Version::of(Identity {
            dev: 1,
            ino: n,
            size: 10,
            mtime_ns: 5,
            birth_ns: 0,
        }),
        spec: "format,png".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn key(n: u64) -> Key {
        test_key(n)
    }

    fn output(len: usize) -> Stored {
        Stored::Heap(vec![7; len])
    }

    #[test]
    fn one_conversion_serves_every_waiter() {
        let cache = Cache::new(1 << 20, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        let mut jobs = Vec::new();
        for _ in 0..16 {
            let tx = tx.clone();
            let waiter: Waiter = Box::new(move |r, _| tx.send(r.map(|o| o.len())).unwrap());
            jobs.extend(cache.get_or_start(key(1), waiter));
        }
        assert_eq!(jobs.len(), 1);
        assert_eq!(cache.stats.misses.load(Ordering::Relaxed), 16);
        jobs.pop().unwrap().finish(Ok(output(100)));
        let answers: Vec<_> = rx.try_iter().collect();
        assert_eq!(answers.len(), 16);
        assert!(answers.iter().all(|a| *a == Ok(100)));
        // Later requests are hits.
        let waiter: Waiter = Box::new(|r, _| assert!(r.is_ok()));
        assert!(cache.get_or_start(key(1), waiter).is_none());
        assert_eq!(cache.stats.hits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_byte_budget_evicts_least_recently_used() {
        let cost = entry_cost(&key(0), &Entry::Ready(Arc::new(output(1000))));
        let cache = Cache::new(cost * 2, Duration::from_secs(10));
        for n in 0..3 {
            cache
                .get_or_start(key(n), Box::new(|_, _| {}))
                .unwrap()
                .finish(Ok(output(1000)));
            if n == 1 {
                assert!(cache.get(&key(0)).is_some()); // 0 is now most recent
            }
        }
        assert!(cache.bytes() <= cost * 2);
        assert!(cache.get(&key(0)).is_some());
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(2)).is_some());
        assert_eq!(cache.stats.evictions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn errors_are_remembered_briefly() {
        let cache = Cache::new(1 << 20, Duration::from_millis(50));
        cache
            .get_or_start(key(1), Box::new(|_, _| {}))
            .unwrap()
            .finish(Err(Error::Decode("broken".into())));
        assert!(matches!(cache.get(&key(1)), Some(Err(Error::Decode(_)))));
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get_or_start(key(1), Box::new(|_, _| {})).is_some());
    }

    #[test]
    fn a_result_read_from_another_version_is_kept_under_that_version() {
        let cache = Cache::new(1 << 20, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        cache
            .get_or_start(
                key(1),
                Box::new(move |r, from| tx.send((r.is_ok(), from.clone())).unwrap()),
            )
            .unwrap()
            .finish_from(key(2).version, Ok(Arc::new(output(10))));
        assert_eq!(rx.recv(), Ok((true, key(2).version)));
        assert!(cache.get(&key(1)).is_none());
        assert!(matches!(cache.get(&key(2)), Some(Ok(_))));
        // Nothing is left pending under the key asked for.
        assert!(cache.get_or_start(key(1), Box::new(|_, _| {})).is_some());
    }

    #[test]
    fn a_job_dropped_unfinished_fails_its_waiters_and_leaves_nothing_pending() {
        let cache = Cache::new(1 << 20, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        let mut jobs = Vec::new();
        for _ in 0..3 {
            let tx = tx.clone();
            let waiter: Waiter = Box::new(move |r, _| tx.send(r.map(|o| o.len())).unwrap());
            jobs.extend(cache.get_or_start(key(1), waiter));
        }
        assert_eq!(jobs.len(), 1);
        drop(jobs);
        let answers: Vec<_> = rx.try_iter().collect();
        assert_eq!(answers.len(), 3);
        assert!(answers
            .iter()
            .all(|a| a.as_ref().unwrap_err().errno() == libc::EIO));
        // Nothing cached: the next request converts again.
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get_or_start(key(1), Box::new(|_, _| {})).is_some());
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_served_not_kept() {
        let cache = Cache::new(100, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        cache
            .get_or_start(key(1), Box::new(move |r, _| tx.send(r.is_ok()).unwrap()))
            .unwrap()
            .finish(Ok(output(1000)));
        assert_eq!(rx.recv(), Ok(true));
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }
}
