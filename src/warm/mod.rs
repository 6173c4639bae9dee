//! `imgfs warm`: fills the disk cache ahead of a mount. Every image under the source
//! (found by its magic bytes, through the same confined [`Root`] a mount uses, so no
//! symlink is followed) is converted with each spec, under exactly the key a mount would
//! compute, on `--jobs` threads inside one memory gate; entries already cached are skipped.
//! Ctrl-C or SIGTERM stops taking work: conversions running finish and are kept.

mod progress;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::fs::{Dir, FileType};

use crate::cache::disk::DiskCache;
use crate::cache::Key;
use crate::cli::WarmArgs;
use crate::convert::Inputs;
use crate::error::{Error, Result};
use crate::options::CONVERT_MEMORY_PER_JOB;
use crate::pipeline::memory::MemoryGate;
use crate::pipeline::{self, codec, Settings};
use crate::source::{Caller, Root};
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
    let root = Root::open(&args.source).map_err(|e| format!("{}: {e}", args.source.display()))?;
    let options = args.disk.options();
    let disk = DiskCache::open(&options.dir, options.bytes, settings.fingerprint())
        .map_err(|e| format!("disk cache {}: {e}", options.dir.display()))?;
    let images = images(&root)?;
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
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }
    let tasks = images.len() * run.recipes.len();
    let progress = Progress::new(tasks);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(tasks.max(1)) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let task = next.fetch_add(1, Ordering::Relaxed);
                    if task >= tasks {
                        break;
                    }
                    let (image, recipe) =
                        (&images[task / run.recipes.len()], task % run.recipes.len());
                    let recipe = &run.recipes[recipe];
                    let name = format!("{}@{}", image.display(), recipe.text);
                    progress.record(&name, run.warm(image, recipe));
                }
            });
        }
    });
    let interrupted = stop.load(Ordering::Relaxed);
    let failed = progress.finish(interrupted);
    match (interrupted, failed) {
        (true, _) => Err("interrupted; what was converted is kept".into()),
        (false, 0) => Ok(()),
        (false, n) => Err(format!("{n} conversion(s) failed")),
    }
}

impl Run {
    /// Converts `image` with `recipe` into the cache unless it is there.
    fn warm(&self, image: &Path, recipe: &Recipe) -> Outcome {
        let result = (|| -> Result<Outcome> {
            let found = self.root.entry(image)?;
            let inputs = Inputs::find(&self.root, found, &recipe.spec, &Caller::root())?;
            let key = Key {
                version: inputs.version(),
                spec: recipe.canonical.clone(),
            };
            if self.disk.contains(&key) {
                return Ok(Outcome::Skipped);
            }
            let (source, marks, version) = inputs.read(image, &self.settings.limits)?;
            let output = pipeline::convert_into(
                &source,
                &marks,
                &recipe.spec,
                &self.settings,
                Some(&self.gate),
                |output| output,
            )?;
            // Under the version read, as a mount keeps it.
            let key = Key { version, ..key };
            self.disk
                .put(&key, &output.bytes)
                .map_err(|e| Error::io("disk cache", e))?;
            Ok(Outcome::Converted {
                read: source.len() as u64,
                written: output.bytes.len() as u64,
            })
        })();
        crate::convert::return_freed_memory();
        result.unwrap_or_else(|err| Outcome::Failed(err.to_string()))
    }
}

/// Every regular file under `root` whose first bytes are an image's, relative to it.
fn images(root: &Root) -> std::result::Result<Vec<PathBuf>, String> {
    let mut images = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let io = |e: rustix::io::Errno| format!("{}: {e}", root.path().join(&dir).display());
        let fd = root.open_dir(&dir).map_err(|e| e.to_string())?;
        for entry in Dir::read_from(&fd).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let path = dir.join(name);
            let kind = match entry.file_type() {
                FileType::Unknown => root.entry(&path).map(|f| f.meta.file_type()),
                kind => Ok(kind),
            };
            match kind {
                Ok(FileType::Directory) => dirs.push(path),
                Ok(FileType::RegularFile) if is_image(root, &path) => images.push(path),
                _ => {} // symlinks (their targets inside are warmed as themselves), others
            }
        }
    }
    images.sort();
    Ok(images)
}

fn is_image(root: &Root, path: &Path) -> bool {
    let mut head = [0; 64];
    let read = root
        .entry(path)
        .and_then(|found| found.open(path))
        .and_then(|file| {
            rustix::io::read(&file, &mut head).map_err(|e| Error::io(path.display(), e.into()))
        });
    read.is_ok_and(|len| codec::detect(&head[..len]).is_some())
}
