//! The mount's numbers in the Prometheus text format: what `MNT/.imgfs/metrics` reads and
//! `imgfs stats` prints.
//!
//! Counts that the cache tiers keep anyway (hits, conversions, bytes, entries) stay theirs,
//! in their atomics, and are copied in when the text is rendered, so nothing is counted
//! twice; what only the converter sees (errors by errno, how long conversions took and
//! waited for memory) is recorded here as it happens.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// What the cache tiers hold and have counted, read when the metrics are rendered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierCounts {
    pub hits: u64,
    pub bytes: u64,
    pub entries: u64,
    pub evictions: u64,
}

/// The cache's counts at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    /// Conversions started (a hit in any tier, or joining one in flight, starts none).
    pub conversions: u64,
    /// Requests no tier could answer (they started or joined a conversion).
    pub misses: u64,
    pub memory: TierCounts,
    /// None when the mount has no disk tier.
    pub disk: Option<TierCounts>,
}

/// Seconds a conversion takes: thumbnails in milliseconds, full-size HEIF in seconds.
const CONVERSION_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Seconds a conversion waits at the memory gate: none at all, usually.
const GATE_WAIT_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

pub struct Metrics {
    registry: Registry,
    conversions: IntCounter,
    conversion_errors: IntCounterVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounter,
    cache_evictions: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    conversion_seconds: Histogram,
    gate_wait_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("imgfs".into()), None)
            .expect("a fixed prefix is a valid one");
        let opts = |name: &str, help: &str| Opts::new(name, help);
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("fixed buckets are valid")
        };
        let metrics = Metrics {
            conversions: IntCounter::with_opts(opts(
                "conversions_total",
                "Conversions started (one per distinct variant and version of its inputs).",
            ))
            .expect("valid"),
            conversion_errors: IntCounterVec::new(
                opts(
                    "conversion_errors_total",
                    "Conversions that failed, by errno.",
                ),
                &["errno"],
            )
            .expect("valid"),
            cache_hits: IntCounterVec::new(
                opts("cache_hits_total", "Requests answered by a cache tier."),
                &["tier"],
            )
            .expect("valid"),
            cache_misses: IntCounter::with_opts(opts(
                "cache_misses_total",
                "Requests no tier could answer (they started or joined a conversion).",
            ))
            .expect("valid"),
            cache_evictions: IntCounterVec::new(
                opts(
                    "cache_evictions_total",
                    "Entries evicted to stay within a tier's bound.",
                ),
                &["tier"],
            )
            .expect("valid"),
            cache_bytes: IntGaugeVec::new(
                opts(
                    "cache_bytes",
                    "Bytes a cache tier holds, bookkeeping included.",
                ),
                &["tier"],
            )
            .expect("valid"),
            cache_entries: IntGaugeVec::new(
                opts("cache_entries", "Entries a cache tier holds."),
                &["tier"],
            )
            .expect("valid"),
            conversion_seconds: histogram(
                "conversion_seconds",
                "Wall time of each conversion: reading its inputs, waiting for memory, \
                 decoding, operations, encoding.",
                CONVERSION_BUCKETS,
            ),
            gate_wait_seconds: histogram(
                "memory_gate_wait_seconds",
                "Time each conversion waited for its memory estimate to fit the budget.",
                GATE_WAIT_BUCKETS,
            ),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(metrics.conversions.clone()),
            Box::new(metrics.conversion_errors.clone()),
            Box::new(metrics.cache_hits.clone()),
            Box::new(metrics.cache_misses.clone()),
            Box::new(metrics.cache_evictions.clone()),
            Box::new(metrics.cache_bytes.clone()),
            Box::new(metrics.cache_entries.clone()),
            Box::new(metrics.conversion_seconds.clone()),
            Box::new(metrics.gate_wait_seconds.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each name is registered once");
        }
        metrics
    }

    /// A conversion ended after `took`; failed, with `errno`.
    pub fn conversion_ended(&self, took: Duration, errno: Option<&'static str>) {
        self.conversion_seconds.observe(took.as_secs_f64());
        if let Some(errno) = errno {
            self.conversion_errors.with_label_values(&[errno]).inc();
        }
    }

    /// A conversion waited `waited` at the memory gate.
    pub fn gate_waited(&self, waited: Duration) {
        self.gate_wait_seconds.observe(waited.as_secs_f64());
    }

    /// The text format, with the cache's counts as of `counts`.
    pub fn render(&self, counts: &CacheCounts) -> String {
        raise_to(&self.conversions, counts.conversions);
        raise_to(&self.cache_misses, counts.misses);
        let mut tiers = vec![("memory", counts.memory)];
        tiers.extend(counts.disk.map(|disk| ("disk", disk)));
        for (tier, tier_counts) in tiers {
            raise_to(
                &self.cache_hits.with_label_values(&[tier]),
                tier_counts.hits,
            );
            raise_to(
                &self.cache_evictions.with_label_values(&[tier]),
                tier_counts.evictions,
            );
            self.cache_bytes
                .with_label_values(&[tier])
                .set(i64::try_from(tier_counts.bytes).unwrap_or(i64::MAX));
            self.cache_entries
                .with_label_values(&[tier])
                .set(i64::try_from(tier_counts.entries).unwrap_or(i64::MAX));
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text encoder writes to a Vec");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// Counters only go up: copies a count kept elsewhere into `counter`.
fn raise_to(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.conversion_ended(Duration::from_millis(30), None);
        metrics.conversion_ended(Duration::from_millis(5), Some("EINVAL"));
        metrics.gate_waited(Duration::ZERO);
        let counts = CacheCounts {
            conversions: 2,
            misses: 3,
            memory: TierCounts {
                hits: 7,
                bytes: 1000,
                entries: 1,
                evictions: 0,
            },
            disk: None,
        };
        let text = metrics.render(&counts);
        for line in [
            "# TYPE imgfs_conversions_total counter",
            "imgfs_conversions_total 2",
            "imgfs_conversion_errors_total{errno=\"EINVAL\"} 1",
            "imgfs_cache_hits_total{tier=\"memory\"} 7",
            "imgfs_cache_misses_total 3",
            "imgfs_cache_bytes{tier=\"memory\"} 1000",
            "imgfs_cache_entries{tier=\"memory\"} 1",
            "imgfs_conversion_seconds_bucket{le=\"0.05\"} 2",
            "imgfs_conversion_seconds_count 2",
            "imgfs_memory_gate_wait_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(
            !text.contains("tier=\"disk\""),
            "no disk tier, no disk lines"
        );
        // Rendering again with the same counts moves nothing.
        assert_eq!(metrics.render(&counts), text);
    }
}
