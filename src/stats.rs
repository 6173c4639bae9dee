//! `imgfs stats MNT`: the mount's metrics (`MNT/.imgfs/metrics`) read as a person would
//! want them: conversions and their errors, how long they took, what the caches answered.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The samples of a Prometheus text page: series (name and labels) → value.
struct Samples(BTreeMap<String, f64>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect();
        Samples(samples)
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The label values of `name{label="…"}` series, with their values.
    fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let prefix = format!("{name}{{{label}=\"");
        self.0
            .iter()
            .filter_map(|(series, value)| {
                let rest = series.strip_prefix(&prefix)?;
                Some((rest.split('"').next()?.to_string(), *value))
            })
            .collect()
    }

    /// Count, mean and the bucket bound at or under which `quantile` of a histogram fell.
    fn histogram(&self, name: &str, quantile: f64) -> (f64, f64, Option<String>) {
        let count = self.get(&format!("{name}_count"));
        let sum = self.get(&format!("{name}_sum"));
        let mean = if count > 0.0 { sum / count } else { 0.0 };
        let mut buckets: Vec<(f64, String, f64)> = self
            .by_label(&format!("{name}_bucket"), "le")
            .into_iter()
            .map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), le, n))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let bound = buckets
            .into_iter()
            .find(|(_, _, n)| count > 0.0 && *n >= quantile * count)
            .map(|(_, le, _)| le);
        (count, mean, bound)
    }
}

fn bytes(n: f64) -> String {
    bytesize::ByteSize(n as u64).to_string()
}

/// The most `imgfs stats` reads of a metrics page (the mount's own is a few KiB).
pub const MAX_METRICS_BYTES: u64 = 1 << 20;

/// The text of `mountpoint/.imgfs/metrics`; Err is the line to show. A real `.imgfs` in the
/// source wins over the mount's own (real names win), so whoever may write the source root
/// decides what is there: it is opened beneath `mountpoint` (which itself may be a link, the
/// user's own choice) with no symbolic link followed and no other file system entered, not
/// blocking, and read only if a regular file of at most [`MAX_METRICS_BYTES`]. Following a
/// planted `metrics -> /dev/...` made root's `imgfs stats` open whatever the source's
/// writer named (fourth hostile review of 2026-12-03).
pub fn read_metrics(mountpoint: &std::path::Path) -> Result<String, String> {
    use rustix::fs::{open, openat2, Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    let path = mountpoint.join(".imgfs/metrics");
    let failed = |path: &std::path::Path, err: std::io::Error| {
        format!("{}: {err} (is imgfs mounted there?)", path.display())
    };
    let dir = open(
        mountpoint,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| failed(mountpoint, e.into()))?;
    let file = openat2(
        &dir,
        ".imgfs/metrics",
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )
    .map_err(|e| match e {
        Errno::LOOP | Errno::XDEV => format!(
            "{}: not imgfs's metrics file (a symbolic link or another file system)",
            path.display()
        ),
        e => failed(&path, e.into()),
    })?;
    crate::cli::read_small_file(file.into(), MAX_METRICS_BYTES).map_err(|e| failed(&path, e))
}

/// The readable summary of the metrics page `text`, every control character escaped.
pub fn summarize(text: &str) -> String {
    let s = Samples::parse(text);
    let mut out = String::new();
    let conversions = s.get("imgfs_conversions_total");
    let errors = s.by_label("imgfs_conversion_errors_total", "errno");
    let failed = errors.iter().fold(0.0, |sum, (_, n)| sum + n);
    let _ = write!(out, "conversions    {conversions}, {failed} failed");
    if !errors.is_empty() {
        let each: Vec<String> = errors.iter().map(|(e, n)| format!("{e} {n}")).collect();
        let _ = write!(out, " ({})", each.join(", "));
    }
    out.push('\n');
    for (label, name) in [
        ("converting", "imgfs_conversion_seconds"),
        ("memory wait", "imgfs_memory_gate_wait_seconds"),
    ] {
        let (count, mean, p95) = s.histogram(name, 0.95);
        let _ = write!(out, "{label:<15}");
        match p95 {
            Some(p95) if count > 0.0 => {
                let _ = writeln!(out, "mean {mean:.3} s, 95% within {p95} s");
            }
            _ => out.push_str("none yet\n"),
        }
    }
    let hits = s.by_label("imgfs_cache_hits_total", "tier");
    let misses = s.get("imgfs_cache_misses_total");
    let all_hits = hits.iter().fold(0.0, |sum, (_, n)| sum + n);
    let asked = all_hits + misses;
    let ratio = if asked > 0.0 {
        100.0 * all_hits / asked
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "cache          {all_hits} hits, {misses} misses ({ratio:.0}% hit)"
    );
    for (tier, tier_hits) in hits {
        let entries = s.get(&format!("imgfs_cache_entries{{tier=\"{tier}\"}}"));
        let held = s.get(&format!("imgfs_cache_bytes{{tier=\"{tier}\"}}"));
        let evicted = s.get(&format!("imgfs_cache_evictions_total{{tier=\"{tier}\"}}"));
        let _ = writeln!(
            out,
            "  {tier:<13}{tier_hits} hits, {entries} entries in {}, {evicted} evicted",
            bytes(held)
        );
    }
    // Label values are the page's to choose (a real `.imgfs` in the source takes the
    // mount's place): no control character reaches the terminal.
    out.lines()
        .map(|line| crate::logging::one_line(line) + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CacheCounts, Metrics, TierCounts};
    use std::time::Duration;

    /// Fourth hostile review of 2026-12-03: a `metrics` (or `.imgfs`) that is a symlink is
    /// refused, not followed; a regular file is read, a FIFO refused without waiting.
    #[test]
    fn a_metrics_file_that_is_a_link_is_refused_not_followed() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "imgfs_conversions_total 99\n").unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(mnt.join(".imgfs")).unwrap();
        symlink(&outside, mnt.join(".imgfs/metrics")).unwrap();
        let err = read_metrics(&mnt).unwrap_err();
        assert!(
            err.ends_with("mnt/.imgfs/metrics: not imgfs's metrics file (a symbolic link or another file system)"),
            "{err}"
        );
        std::fs::remove_file(mnt.join(".imgfs/metrics")).unwrap();
        std::fs::write(mnt.join(".imgfs/metrics"), "imgfs_conversions_total 3\n").unwrap();
        assert_eq!(read_metrics(&mnt).unwrap(), "imgfs_conversions_total 3\n");
        // The link may be the directory.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::rename(mnt.join(".imgfs"), other.join(".imgfs")).unwrap();
        symlink(other.join(".imgfs"), mnt.join(".imgfs")).unwrap();
        let err = read_metrics(&mnt).unwrap_err();
        assert!(err.contains("not imgfs's metrics file"), "{err}");
        // The mount point itself may be a link: the user named it.
        let link = dir.path().join("link");
        symlink(&other, &link).unwrap();
        assert_eq!(read_metrics(&link).unwrap(), "imgfs_conversions_total 3\n");
        // A FIFO is refused at once.
        let fifo = other.join(".imgfs/metrics");
        std::fs::remove_file(&fifo).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let err = read_metrics(&link).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn summarizes_what_the_metrics_file_says() {
        let metrics = Metrics::new();
        metrics.conversion_ended(Duration::from_millis(40), None);
        metrics.conversion_ended(Duration::from_millis(300), Some("EINVAL"));
        let text = metrics.render(&CacheCounts {
            conversions: 2,
            misses: 2,
            memory: TierCounts {
                hits: 6,
                bytes: 2 << 20,
                entries: 1,
                evictions: 0,
            },
            disk: None,
        });
        let summary = summarize(&text);
        for expected in [
            "conversions    2, 1 failed (EINVAL 1)",
            "converting     mean 0.170 s, 95% within 0.5 s",
            "memory wait    none yet",
            "cache          6 hits, 2 misses (75% hit)",
            "  memory       6 hits, 1 entries in 2.0 MiB, 0 evicted",
        ] {
            assert!(summary.contains(expected), "no `{expected}` in:\n{summary}");
        }
    }

    #[test]
    fn a_label_cannot_send_control_characters_to_the_terminal() {
        // Third hostile review of 2026-12-03: label values were printed raw.
        let page = "imgfs_conversion_errors_total{errno=\"\u{1b}]0;owned\u{7}\"} 3\n";
        let out = summarize(page);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("owned"), "{out:?}");
    }
}
