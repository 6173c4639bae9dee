//! Where log lines go: stderr in the foreground; for a detached mount, the systemd journal
//! (or syslog where there is no journal) as well, and stderr only until it detaches.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, fmt, EnvFilter, Layer};

/// Set once a daemon has let go of the terminal: stderr is /dev/null from then on.
static DETACHED: AtomicBool = AtomicBool::new(false);

/// The name log lines carry in the journal and syslog.
const IDENTIFIER: &str = "imgfs";

/// Installs the logger: level `info`, `-v` debug, `-vv` trace; `RUST_LOG` overrides.
/// `daemon`: also log to the journal, or syslog, which outlive the terminal.
pub fn init(verbose: u8, daemon: bool) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let level = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let stderr = fmt::layer()
        .with_writer(OneLine(std::io::stderr))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // A daemon tells the terminal only what went wrong; the journal gets the rest.
        .with_filter(filter::filter_fn(move |line| {
            !DETACHED.load(Ordering::Relaxed) && (!daemon || *line.level() <= tracing::Level::WARN)
        }))
        .with_filter(level());
    let registry = tracing_subscriber::registry().with(stderr);
    if !daemon {
        registry.init();
        return;
    }
    match tracing_journald::layer() {
        Ok(journal) => registry
            .with(
                journal
                    .with_syslog_identifier(IDENTIFIER.into())
                    .with_filter(level()),
            )
            .init(),
        Err(_) => registry
            .with(syslog().map(|s| s.with_filter(level())))
            .init(),
    }
}

/// Lines to syslog(3) (the daemon facility), when the journal's socket is missing.
fn syslog<S>() -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let identity = std::ffi::CString::new(IDENTIFIER).expect("no NUL");
    let writer = syslog_tracing::Syslog::new(
        identity,
        syslog_tracing::Options::LOG_PID,
        syslog_tracing::Facility::Daemon,
    )?;
    Some(
        fmt::layer()
            .with_writer(OneLine(writer))
            .with_ansi(false)
            .with_target(false)
            .without_time(),
    )
}

/// Makes writers that keep each event on one line: line breaks and other control characters
/// inside it are escaped (`\n`, `\x07`). File names are anyone's to choose and go into log
/// lines; one with a newline must not start a line that reads as imgfs's own. The journal
/// needs no such care: it stores each event as one entry, whatever its message holds.
struct OneLine<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        OneLineWriter(self.0.make_writer_for(meta))
    }
}

/// Escapes what [`OneLine`] says in each write but its last byte, the event's own newline:
/// the formatter writes an event in one piece.
struct OneLineWriter<W>(W);

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        let mut line = Vec::with_capacity(buf.len());
        escape_into(body, &mut line, true);
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `text` with its line breaks and control characters escaped, as [`OneLine`] writes it:
/// for lines printed outside the log (`warm`'s summary) that carry file names.
pub fn one_line(text: &str) -> String {
    let mut line = Vec::with_capacity(text.len());
    escape_into(text.as_bytes(), &mut line, false);
    // Only ASCII bytes were replaced, by ASCII.
    String::from_utf8(line).expect("still UTF-8")
}

/// How long a path in a line `warm` logs or prints may be, in bytes, before [`short_path`]
/// shortens it. Paths in the source tree are anyone's to make, and the walk goes below
/// PATH_MAX: one of 394 levels of 255-byte names is 100 KB, repeated in every line about a
/// file there (fourth hostile review of 2026-12-03).
pub const SHORT_PATH_BYTES: usize = 200;

/// `path` for a log line: itself if at most [`SHORT_PATH_BYTES`] long, else `…/` and as many
/// of its last components as fit in that (always the last one, at most 255 bytes), so the
/// name and where it is stay readable. Not escaped: [`one_line`] or the logger does that.
pub fn short_path(path: &std::path::Path) -> String {
    use std::path::Component;
    let whole = path.display().to_string();
    if whole.len() <= SHORT_PATH_BYTES {
        return whole;
    }
    let mut kept: Vec<String> = Vec::new();
    let mut len = 0;
    for component in path.components().rev() {
        let name = match component {
            Component::Normal(name) => name.to_string_lossy().into_owned(),
            other => other.as_os_str().to_string_lossy().into_owned(),
        };
        if !kept.is_empty() && len + name.len() + 1 > SHORT_PATH_BYTES {
            kept.push("…".into());
            break;
        }
        len += name.len() + 1;
        kept.push(name);
    }
    kept.reverse();
    kept.join("/")
}

/// `colours`: ESC passes, as it starts the formatter's colours (which escapes any ESC inside
/// a field itself).
fn escape_into(text: &[u8], line: &mut Vec<u8>, colours: bool) {
    for &byte in text {
        match byte {
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.push(byte),
            0x1b if colours => line.push(byte),
            0..=0x1f | 0x7f => line.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            _ => line.push(byte),
        }
    }
}

/// The process let go of the terminal: stop writing to stderr.
pub fn detached() {
    DETACHED.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_a_newline_cannot_start_a_log_line_of_its_own() {
        let mut out = OneLineWriter(Vec::new());
        let event = b"INFO a\nWARN forged\r\x07\tend\n";
        assert_eq!(out.write(event).unwrap(), event.len());
        assert_eq!(out.0, b"INFO a\\nWARN forged\\r\\x07\tend\n");
        // Through the formatter, as a mount logs a file name.
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = fmt()
            .with_writer(OneLine(move || Sink(sink.clone())))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                "{}: not an image",
                "a.jpg\n2026-12-03T00:00:00Z WARN forged"
            );
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("a.jpg\\n2026"), "{text}");
        // Printed outside the log, an ESC is escaped too.
        assert_eq!(one_line("a\x1b[2Jb\n"), "a\\x1b[2Jb\\n");
    }

    #[test]
    fn a_long_path_keeps_its_last_components_after_an_ellipsis() {
        use std::path::Path;
        assert_eq!(short_path(Path::new("a/b/c.jpg")), "a/b/c.jpg");
        // 400 levels of 255-byte names: each one too long to join the last.
        let long = "d".repeat(255);
        let deep: std::path::PathBuf = std::iter::repeat_n(long.as_str(), 400).collect();
        assert_eq!(short_path(&deep.join("x.png")), "…/x.png");
        let mid = "m".repeat(90);
        let deep = deep.join(&mid).join(&mid).join("x.png");
        assert_eq!(short_path(&deep), format!("…/{mid}/{mid}/x.png"));
        let shown = short_path(&Path::new(&"e/".repeat(1000)).join("x.png"));
        assert!(
            shown.starts_with("…/e/e/") && shown.ends_with("/e/x.png"),
            "{shown}"
        );
        assert!(
            shown.len() <= SHORT_PATH_BYTES + "…/".len(),
            "{}",
            shown.len()
        );
        // One name longer than the bound is kept whole.
        let name = "n".repeat(255);
        assert_eq!(short_path(Path::new(&name)), name);
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
