//! What `imgfs warm` keeps of its failures (directories not walked, conversions failed):
//! all are counted, only the first [`SHOWN_FAILURES`] are kept, logged and listed in the
//! summary, each at most [`MAX_FAILURE_BYTES`] long.

/// How many failures `imgfs warm` keeps, logs and lists in its summary; past them it only
/// counts them (one log line says so, and the summary says how many were not shown). Anyone
/// who may write in the source tree can make as many failures as they like, e.g. empty
/// directories below the depth at which the walk runs out of descriptors: each kept and
/// logged whole, 8,000 of them made 874 MB of memory and 800 MB each of log and summary
/// (fourth hostile review of 2026-12-03).
pub const SHOWN_FAILURES: usize = 100;

/// The longest failure message kept, in bytes; a longer one keeps its start and its end
/// (the reason), joined by "…". Paths in messages are shortened already
/// ([`crate::logging::short_path`]); this also bounds a reason that quotes one whole.
pub const MAX_FAILURE_BYTES: usize = 1024;

/// The failures of one run.
#[derive(Default)]
pub struct Failures {
    count: usize,
    shown: Vec<String>,
}

impl Failures {
    /// Counts one failure. The first [`SHOWN_FAILURES`] are made (`message`, called for
    /// them only), kept and handed to `log`; the next one hands `log` a line saying that
    /// the rest are only counted; after that nothing is made or logged.
    pub fn add(&mut self, message: impl FnOnce() -> String, log: impl FnOnce(&str)) {
        self.count += 1;
        if self.shown.len() < SHOWN_FAILURES {
            let message = bounded(message());
            log(&message);
            self.shown.push(message);
        } else if self.count == SHOWN_FAILURES + 1 {
            log(&format!(
                "more than {SHOWN_FAILURES} failures: the rest are counted, not shown"
            ));
        }
    }

    /// How many failures there were.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The failures kept: the first [`SHOWN_FAILURES`].
    pub fn shown(&self) -> &[String] {
        &self.shown
    }

    /// How many failures were counted but not kept.
    pub fn not_shown(&self) -> usize {
        self.count - self.shown.len()
    }
}

/// `message` cut to at most [`MAX_FAILURE_BYTES`] (plus the "…"): its start and its end.
fn bounded(message: String) -> String {
    if message.len() <= MAX_FAILURE_BYTES {
        return message;
    }
    let half = MAX_FAILURE_BYTES / 2;
    let mut head = half;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - half;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &message[..head], &message[tail..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_first_hundred_are_counted_not_kept() {
        let mut failures = Failures::default();
        let mut logged = Vec::new();
        let mut made = 0;
        for n in 0..10_000 {
            failures.add(
                || {
                    made += 1;
                    format!("dir{n}: not walked: {}", "x".repeat(5000))
                },
                |line| logged.push(line.to_string()),
            );
        }
        assert_eq!(failures.count(), 10_000);
        assert_eq!(failures.shown().len(), SHOWN_FAILURES);
        assert_eq!(failures.not_shown(), 10_000 - SHOWN_FAILURES);
        assert_eq!(
            made, SHOWN_FAILURES,
            "messages past the bound are never made"
        );
        assert_eq!(logged.len(), SHOWN_FAILURES + 1);
        assert!(logged[SHOWN_FAILURES].contains("counted, not shown"));
        for message in failures.shown() {
            assert!(message.len() <= MAX_FAILURE_BYTES + "…".len(), "{message}");
            assert!(message.starts_with("dir") && message.ends_with("xxx"));
            assert!(message.contains(": not walked: xxx") && message.contains("x…x"));
        }
    }

    #[test]
    fn a_long_message_is_cut_at_character_boundaries() {
        let message = "é".repeat(MAX_FAILURE_BYTES);
        let cut = bounded(message);
        assert!(cut.len() <= MAX_FAILURE_BYTES + "…".len());
        assert!(cut.starts_with('é') && cut.ends_with('é') && cut.contains('…'));
    }
}
