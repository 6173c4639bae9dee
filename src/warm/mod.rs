//! `imgfs warm`: fills the disk cache ahead of a mount. Every image under the source
//! (found by its magic bytes, each directory opened relative to its parent and no symlink
//! followed: `walk`; a directory that cannot be walked is a failure, and the walk goes on)
//! is converted with each spec, under exactly the key a mount would
//! compute, on `--jobs` threads inside one memory gate; entries already cached are skipped.
//! A job takes one image (largest first) with all its specs, so the image is read once and
//! decoded once for every spec that starts from the same pixels (`pipeline::batch`).
//! Ctrl-C or SIGTERM stops taking work: conversions running finish and are kept. A second
//! one exits at once, with 128 + its number (130 for SIGINT, 143 for SIGTERM), as a death by
//! it reads in a shell: what was stored is kept, entries being written leave temporary
//! files that the disk cache's scan removes once 15 minutes old.

mod failures;
mod progress;
mod walk;

pub use failures::{MAX_FAILURE_BYTES, SHOWN_FAILURES};

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cache::disk::{refuse_inside, DiskCache};
use crate::cache::{Key, Version};
use crate::cli::WarmArgs;
use crate::convert::{find_marks, read_marks, version_of};
use crate::error::Error;
use crate::options::CONVERT_MEMORY_PER_JOB;
use crate::pipeline::batch::Job;
use crate::pipeline::memory::MemoryGate;
use crate::pipeline::{self, Settings};
use crate::source::{read_file, Caller, Root};
use crate::spec::Spec;
use progress::{Outcome, Progress};

/// One spec as given and as parsed.
struct Recipe {
    text: String,
    spec: Spec,
    canonical: String,
}

/// What every conversion of a run shares.
struct Run {
    root: Root,
    disk: Arc<DiskCache>,
    settings: Settings,
    gate: MemoryGate,
    recipes: Vec<Recipe>,
}

/// Runs `imgfs warm`; Err with the reason if it could not start, or if any conversion
/// failed or Ctrl-C stopped it (after the summary is printed).
pub fn run(args: &WarmArgs) -> std::result::Result<(), String> {
    let settings = args.processing.settings();
    let styles = args.processing.styles().map_err(|e| e.to_string())?;
    let recipes = args
        .specs
        .iter()
        .map(|text| {
            let spec = Spec::parse(text, &styles).map_err(|e| format!("{text}: {e}"))?;
            Ok(Recipe {
                text: text.clone(),
                canonical: spec.canonical(),
                spec,
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    // The walk holds a descriptor per level, then each job its files.
    crate::limits::raise_open_files_limit();
    let root = Root::open(&args.source).map_err(|e| format!("{}: {e}", args.source.display()))?;
    let options = args.disk.options();
    let disk = refuse_inside(&options.dir, &args.source)
        .and_then(|()| DiskCache::open(&options.dir, options.bytes, settings.fingerprint()))
        .map_err(|e| format!("disk cache {}: {e}", options.dir.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it runs before the flag is set: only a second signal exits.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, stop.clone())
            .map_err(|e| e.to_string())?;
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }
    let mut walk = walk::walk(&root, &stop);
    // Largest first: the longest conversions start early, so no job is left alone at the end.
    walk.images
        .sort_by_key(|image| std::cmp::Reverse(image.size));
    let failures = std::mem::take(&mut walk.failures);
    let images = &walk.images;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let run = Run {
        root,
        disk,
        settings,
        gate: MemoryGate::new(jobs as u64 * CONVERT_MEMORY_PER_JOB),
        recipes,
    };
    let progress = Progress::new(images.len() * run.recipes.len(), failures, walk.links);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(images.len().max(1)) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(image) = images.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let image = walk.path(image);
                    let shown = crate::logging::short_path(&image);
                    run.warm(&image, &stop, |recipe, outcome| {
                        progress.record(&format!("{shown}@{}", recipe.text), outcome);
                    });
                }
            });
        }
    });
    let interrupted = stop.load(Ordering::Relaxed);
    let failed = progress.finish(interrupted);
    match (interrupted, failed) {
        (true, _) => Err("interrupted; what was converted is kept".into()),
        (false, 0) => Ok(()),
        (false, n) => Err(format!(
            "{n} failed (conversions, or directories not walked)"
        )),
    }
}

impl Run {
    /// Converts `image` with every recipe whose entry is not cached yet, decoding it once
    /// for all of them where their decodes agree (`pipeline::batch`). `stop` is checked
    /// between conversions.
    fn warm(&self, image: &Path, stop: &AtomicBool, record: impl Fn(&Recipe, Outcome)) {
        let fail_all = |err: &Error| {
            for recipe in &self.recipes {
                record(recipe, Outcome::Failed(err.to_string()));
            }
        };
        let found = match self.root.entry(image) {
            Ok(found) => found,
            Err(err) => return fail_all(&err),
        };
        let mut pending = Vec::new();
        for recipe in &self.recipes {
            match find_marks(&self.root, &recipe.spec, &Caller::root()) {
                Ok(marks) => {
                    let key = Key {
                        version: version_of(&found, &marks),
                        spec: recipe.canonical.clone(),
                    };
                    if self.disk.contains(&key) {
                        record(recipe, Outcome::Skipped);
                    } else {
                        pending.push((recipe, marks));
                    }
                }
                Err(err) => record(recipe, Outcome::Failed(err.to_string())),
            }
        }
        if pending.is_empty() {
            return;
        }
        let limits = &self.settings.limits;
        let read = found
            .open(image)
            .and_then(|file| read_file(&file, image, limits));
        let (source, identity) = match read {
            Ok(read) => read,
            Err(err) => {
                for (recipe, _) in &pending {
                    record(recipe, Outcome::Failed(err.to_string()));
                }
                return;
            }
        };
        let mut readable = Vec::with_capacity(pending.len());
        for (recipe, marks) in pending {
            match read_marks(&marks, limits) {
                Ok((marks, identities)) => readable.push((recipe, marks, identities)),
                Err(err) => record(recipe, Outcome::Failed(err.to_string())),
            }
        }
        let jobs: Vec<Job> = readable
            .iter()
            .map(|(r, marks, _)| (&r.spec, marks))
            .collect();
        pipeline::batch::convert_each(
            &source,
            &jobs,
            &self.settings,
            Some(&self.gate),
            |n, out| {
                let (recipe, _, marks) = &readable[n];
                // Under the versions read, as a mount keeps it.
                let key = Key {
                    version: Version {
                        source: identity,
                        marks: marks.clone(),
                    },
                    spec: recipe.canonical.clone(),
                };
                let stored = out.and_then(|output| {
                    self.disk
                        .put(&key, &output.bytes)
                        .map_err(|e| Error::io("disk cache", e))?;
                    Ok(Outcome::Converted {
                        read: source.len() as u64,
                        written: output.bytes.len() as u64,
                    })
                });
                record(
                    recipe,
                    stored.unwrap_or_else(|e| Outcome::Failed(e.to_string())),
                );
                crate::convert::return_freed_memory();
                if stop.load(Ordering::Relaxed) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
    }
}
