//! What `imgfs warm` shows while it runs and at the end: a progress bar on a terminal
//! (files done/total, bytes saved, rate, time left), one log line per file otherwise, and a
//! summary (converted, skipped, failed with reasons, bytes in and out). Failures are counted
//! all, but only the first [`SHOWN_FAILURES`] are logged and listed ([`Failures`]).

use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

use super::failures::{Failures, SHOWN_FAILURES};

/// How one file with one spec went.
pub enum Outcome {
    Converted { read: u64, written: u64 },
    Skipped,
    Failed(String),
}

#[derive(Default)]
struct Counts {
    done: usize,
    converted: usize,
    skipped: usize,
    failed: Failures,
    read: u64,
    written: u64,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    counts: Mutex<Counts>,
    started: Instant,
    /// Names skipped as hard links of a file listed.
    links: usize,
}

impl Progress {
    /// `total` conversions to come; `failures` (directories not walked, logged already)
    /// are counted with theirs; `links` names were skipped as hard links.
    pub fn new(total: usize, failures: Failures, links: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} files, {msg} saved, {per_sec}, ETA {eta}",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar.set_message("0 B");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            total,
            counts: Mutex::new(Counts {
                failed: failures,
                ..Counts::default()
            }),
            started: Instant::now(),
            links,
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `outcome` of `name` (a file@spec, its path shortened) and shows it.
    pub fn record(&self, name: &str, outcome: Outcome) {
        let mut counts = self.counts();
        counts.done += 1;
        let line = match outcome {
            Outcome::Converted { read, written } => {
                counts.converted += 1;
                counts.read += read;
                counts.written += written;
                format!("converted, {} → {}", ByteSize(read), ByteSize(written))
            }
            Outcome::Skipped => {
                counts.skipped += 1;
                "cached already".to_string()
            }
            Outcome::Failed(reason) => {
                let (done, total, bar) = (counts.done, self.total, self.bar.is_some());
                counts.failed.add(
                    || format!("{name}: {reason}"),
                    |line| {
                        if !bar {
                            warn!("[{done}/{total}] {line}");
                        }
                    },
                );
                return self.advance(&counts);
            }
        };
        if self.bar.is_none() {
            info!("[{}/{}] {name}: {line}", counts.done, self.total);
        }
        self.advance(&counts);
    }

    fn advance(&self, counts: &Counts) {
        if let Some(bar) = &self.bar {
            bar.set_position(counts.done as u64);
            bar.set_message(ByteSize(counts.written).to_string());
        }
    }

    /// Prints the summary; returns how many failed.
    pub fn finish(&self, interrupted: bool) -> usize {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let counts = self.counts();
        let stopped = if interrupted {
            format!(" (interrupted: {} not done)", self.total - counts.done)
        } else {
            String::new()
        };
        let links = match self.links {
            0 => String::new(),
            n => format!(", {n} hard link(s) skipped (same file as a name listed)"),
        };
        println!(
            "warm: {} converted, {} skipped (cached), {} failed{links}{stopped} in {:.1} s; {} in → {} out",
            counts.converted,
            counts.skipped,
            counts.failed.count(),
            self.started.elapsed().as_secs_f64(),
            ByteSize(counts.read),
            ByteSize(counts.written),
        );
        for failure in counts.failed.shown() {
            println!("  failed: {}", crate::logging::one_line(failure));
        }
        match counts.failed.not_shown() {
            0 => {}
            n => println!(
                "  … and {n} more failures, not shown (only the first {SHOWN_FAILURES} are)"
            ),
        }
        counts.failed.count()
    }
}
