//! The converter: from a variant's found inputs to its stored bytes.
//!
//! A request is keyed by the version of its inputs (the source and every watermark image,
//! see [`Version`]) and the canonical spec. The memory cache answers it, or joins it to the
//! one conversion in flight for its key (single-flight), or hands back a job. The job is
//! first asked of the disk tier, on the request's own thread, as a read of an original
//! would be: a cached variant never queues behind conversions. Otherwise it runs here on a
//! worker thread: the inputs are read through the descriptors they were found by, the
//! pipeline runs inside the memory gate, the result is kept under the version actually
//! read (in memory, then written to disk once the waiters have it), one log line says how
//! it went, and freed memory goes back to the system. Request threads never wait for a
//! conversion: the answer comes through a callback.

mod workers;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::cache::disk::DiskCache;
use crate::cache::{Cache, Converted, Key, Stored, Version};
use crate::error::{errno_name, Error, Result};
use crate::limits::Limits;
use crate::metrics::{CacheCounts, Metrics, TierCounts};
use crate::pipeline::memory::MemoryGate;
use crate::pipeline::{self, Marks, Settings};
use crate::source::{read_file, Caller, Found, Identity, Links, Root};
use crate::spec::Spec;
use workers::Workers;

/// Every file a variant is made from, found (and judged readable) for one request.
#[derive(Debug)]
pub struct Inputs {
    pub source: Found,
    /// The watermark images, by the path the spec gives, in [`Spec::mark_paths`] order.
    pub marks: Vec<(String, Found)>,
    /// What the caller's account holds for these inputs' descriptors, given back when they
    /// are dropped: when a conversion queued for them ends, or at once when the cache or
    /// a conversion in flight answers (fourth hostile review of 2026-12-03: conversions
    /// queued by one user held descriptors without limit).
    held: Option<Box<dyn std::any::Any + Send>>,
}

impl Inputs {
    /// The inputs of `spec` applied to `source`: the watermark images it names, found
    /// inside `root` as `caller` would reach them, regular files only.
    pub fn find(root: &Root, source: Found, spec: &Spec, caller: &Caller) -> Result<Inputs> {
        let marks = find_marks(root, spec, caller)?;
        Ok(Inputs {
            source,
            marks,
            held: None,
        })
    }

    /// The descriptors these inputs hold open (the source and each watermark image).
    pub fn descriptors(&self) -> u64 {
        1 + self.marks.len() as u64
    }

    /// These inputs, keeping `charge` (given back on its drop) as long as they are held.
    pub fn holding(mut self, charge: impl std::any::Any + Send) -> Inputs {
        self.held = Some(Box::new(charge));
        self
    }

    /// The version these inputs had when found.
    pub fn version(&self) -> Version {
        version_of(&self.source, &self.marks)
    }

    /// The bytes reading every input takes, as found (a larger file is refused as read).
    pub fn bytes(&self, limits: &Limits) -> u64 {
        let marks = self.marks.iter().map(|(_, mark)| &mark.meta);
        std::iter::once(&self.source.meta)
            .chain(marks)
            .map(|meta| meta.size.min(limits.max_source_bytes))
            .sum()
    }

    /// Reads every input: the source's bytes, the marks', and the version they are.
    pub fn read(&self, name: &Path, limits: &Limits) -> Result<(Vec<u8>, Marks, Version)> {
        let (source, identity) = read_file(&self.source.open(name)?, name, limits)?;
        let (marks, identities) = self.read_marks(limits)?;
        let version = Version {
            source: identity,
            marks: identities,
        };
        Ok((source, marks, version))
    }

    /// Reads the watermark images alone, with the identities they had when read.
    pub fn read_marks(&self, limits: &Limits) -> Result<(Marks, Vec<Identity>)> {
        read_marks(&self.marks, limits)
    }
}

/// The watermark images `spec` names, found inside `root` as `caller` would reach them,
/// regular files only, by the path the spec gives, in [`Spec::mark_paths`] order.
pub fn find_marks(root: &Root, spec: &Spec, caller: &Caller) -> Result<Vec<(String, Found)>> {
    spec.mark_paths()
        .into_iter()
        .map(|path| {
            let found = root
                .resolve(Path::new(path), Links::All, caller)
                .map_err(|e| e.context("watermark image"))?;
            if !found.meta.is_file() {
                return Err(Error::NotFound(format!(
                    "watermark image {path}: not a regular file"
                )));
            }
            Ok((path.to_string(), found))
        })
        .collect()
}

/// The version of a source and its watermark images as found.
pub fn version_of(source: &Found, marks: &[(String, Found)]) -> Version {
    Version {
        source: source.meta.identity(),
        marks: marks.iter().map(|(_, m)| m.meta.identity()).collect(),
    }
}

/// Reads found watermark images, with the identities they had when read.
pub fn read_marks(marks: &[(String, Found)], limits: &Limits) -> Result<(Marks, Vec<Identity>)> {
    let mut read = Marks::default();
    let mut identities = Vec::with_capacity(marks.len());
    for (path, found) in marks {
        let path_name = Path::new(path);
        let (bytes, identity) = read_file(&found.open(path_name)?, path_name, limits)?;
        read.insert(path.clone(), bytes);
        identities.push(identity);
    }
    Ok((read, identities))
}

/// Runs conversions for a mount: the cache in front, the worker threads behind, the
/// memory gate around each conversion.
pub struct Converter {
    cache: Arc<Cache>,
    disk: Option<Arc<DiskCache>>,
    gate: Arc<MemoryGate>,
    workers: Workers,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
}

impl Converter {
    pub fn new(
        settings: Settings,
        (cache, disk): (Arc<Cache>, Option<Arc<DiskCache>>),
        gate: Arc<MemoryGate>,
        jobs: usize,
    ) -> std::io::Result<Converter> {
        let metrics = Arc::new(Metrics::new());
        let observed = metrics.clone();
        gate.observe_waits(move |waited| observed.gate_waited(waited));
        Ok(Converter {
            cache,
            disk,
            gate,
            workers: Workers::new(jobs)?,
            settings: Arc::new(settings),
            metrics,
        })
    }

    /// The cache tiers' counts now, for the metrics.
    pub fn counts(&self) -> CacheCounts {
        let stats = &self.cache.stats;
        let disk = self.disk.as_ref().map(|disk| TierCounts {
            hits: disk.stats.hits.load(Ordering::Relaxed),
            bytes: disk.bytes(),
            entries: disk.len() as u64,
            evictions: disk.stats.evictions.load(Ordering::Relaxed),
        });
        // What memory missed and the disk then answered was no miss of the cache's.
        let disk_hits = disk.map_or(0, |disk| disk.hits);
        CacheCounts {
            conversions: stats.conversions.load(Ordering::Relaxed),
            misses: stats
                .misses
                .load(Ordering::Relaxed)
                .saturating_sub(disk_hits),
            memory: TierCounts {
                hits: stats.hits.load(Ordering::Relaxed),
                bytes: self.cache.bytes(),
                entries: self.cache.len() as u64,
                evictions: stats.evictions.load(Ordering::Relaxed),
            },
            disk,
        }
    }

    /// The metrics in the Prometheus text format (`.imgfs/metrics`).
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&self.counts())
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The disk tier, if the mount has one.
    pub fn disk(&self) -> Option<&Arc<DiskCache>> {
        self.disk.as_ref()
    }

    pub fn memory_gate(&self) -> &Arc<MemoryGate> {
        &self.gate
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Waits (at most `timeout`) for the conversions queued or running, and so for their
    /// writes to the disk tier: called once the mount has ended, before the process exits.
    pub fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let pending = self.workers.pending();
        if pending > 0 {
            info!("waiting for {pending} conversions to finish and be written");
        }
        self.workers.wait_idle(timeout)
    }

    /// The variant `name` (for log lines): `spec` applied to `inputs`, from the cache, by
    /// joining the conversion in flight, or by starting one on a worker, queued for user
    /// `uid` (users' conversions are started in turn). `then` runs once,
    /// on whichever thread has the answer, with the version the bytes were made from (a
    /// later one than `inputs.version()` if an input changed before it was read).
    pub fn convert(
        &self,
        name: &Path,
        spec: &Arc<Spec>,
        canonical: &str,
        inputs: Inputs,
        uid: u32,
        then: impl FnOnce(Result<Converted>, &Version) + Send + 'static,
    ) {
        let key = Key {
            version: inputs.version(),
            spec: canonical.to_string(),
        };
        let Some(job) = self.cache.get_or_start(key, Box::new(then)) else {
            return;
        };
        if let Some(stored) = self.disk.as_ref().and_then(|disk| disk.get(job.key())) {
            debug!("{}: from the disk cache", name.display());
            return job.finish(Ok(stored));
        }
        self.cache.stats.conversions.fetch_add(1, Ordering::Relaxed);
        let (settings, spec, name) = (self.settings.clone(), spec.clone(), name.to_path_buf());
        let (gate, disk, metrics) = (self.gate.clone(), self.disk.clone(), self.metrics.clone());
        self.workers.spawn(uid, move || {
            let started = Instant::now();
            let _span = tracing::debug_span!("convert", name = %name.display()).entered();
            let mut read = None;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Counted before it is read; grown to the estimate once the header is known.
                let reserved = gate.reserve_to_read(inputs.bytes(&settings.limits));
                let (source, marks, version) = inputs.read(&name, &settings.limits)?;
                read = Some(version);
                pipeline::convert_into(
                    &source,
                    &marks,
                    &spec,
                    &settings,
                    Some(reserved),
                    Stored::new,
                )
            }))
            .unwrap_or_else(|_| Err(Error::Decode("the conversion panicked".into())));
            log_outcome(&name, &result, started);
            let errno = result.as_ref().err().map(|e| errno_name(e.errno()));
            metrics.conversion_ended(started.elapsed(), errno);
            // Kept under the version actually read, so a key never maps to another
            // version's bytes.
            let read = read.unwrap_or_else(|| job.key().version.clone());
            let key = Key {
                version: read.clone(),
                spec: job.key().spec.clone(),
            };
            let result = result.map(Arc::new);
            job.finish_from(read, result.clone());
            if let (Some(disk), Ok(out)) = (disk, result) {
                if let Err(err) = disk.put(&key, out.bytes()) {
                    warn!("disk cache: {err}; {} kept in memory only", name.display());
                }
            }
            return_freed_memory();
        });
    }
}

fn log_outcome(name: &Path, result: &Result<Stored>, started: Instant) {
    match result {
        Ok(out) => info!(
            "converted {} in {} ms: {} bytes",
            name.display(),
            started.elapsed().as_millis(),
            out.len()
        ),
        Err(err) if err.is_user_error() => info!("{}: {err}", name.display()),
        Err(err) => warn!("{}: {err}", name.display()),
    }
}

/// glibc keeps the small blocks a conversion freed (codec tables, rows, x265 and libwebp
/// thread state) in per-thread arenas; trimming after each conversion gives them back, so
/// the mount's RSS falls to the cache and what runs (README, "Cache and concurrency").
pub(crate) fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and touches only chunks already free: it locks each
    // arena in turn (glibc marks it MT-Safe), so workers allocating meanwhile are unaffected.
    unsafe {
        libc::malloc_trim(0);
    }
}
