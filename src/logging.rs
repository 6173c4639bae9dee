//! Where log lines go: stderr in the foreground; for a detached mount, the systemd journal
//! (or syslog where there is no journal) as well, and stderr only until it detaches.

use std::sync::atomic::{AtomicBool, Ordering};

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
        .with_writer(std::io::stderr)
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
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false)
            .without_time(),
    )
}

/// The process let go of the terminal: stop writing to stderr.
pub fn detached() {
    DETACHED.store(true, Ordering::Relaxed);
}
