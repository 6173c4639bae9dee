//! The `imgfs` binary: parses the command line and hands over to the library.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use imgfs::cli::{Cli, Command, ConvertArgs, MountArgs, StatsArgs};
use imgfs::convert::Inputs;
use imgfs::daemon::Readiness;
use imgfs::options::MountOptions;
use imgfs::source::{Caller, Found, Root};
use imgfs::spec::Spec;
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let line = match imgfs::helper::command_line(std::env::args_os().collect()) {
        Ok(line) => line,
        Err(message) => {
            eprintln!("imgfs: {message}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(line);
    // Before anything else: a fork copies only the calling thread.
    let daemon = matches!(&cli.command, Command::Mount(args) if args.daemon);
    let readiness = match daemon.then(imgfs::daemon::detach).transpose() {
        Ok(readiness) => readiness,
        Err(e) => {
            eprintln!("imgfs: cannot detach: {e}");
            return ExitCode::FAILURE;
        }
    };
    imgfs::logging::init(cli.verbose, daemon);
    return_freed_frames();
    let result = match cli.command {
        Command::Mount(args) => mount(args, readiness),
        Command::Convert(args) => convert(args),
        Command::Stats(args) => stats(args),
        Command::Warm(args) => imgfs::warm::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Frames and encoder buffers are tens of MiB and short-lived. glibc raises its mmap threshold
/// after the first such free (up to 32 MiB), after which they come from the heap and stay in
/// the process's RSS; a fixed threshold keeps them mmapped, so a free returns them at once.
fn return_freed_frames() {
    // SAFETY: mallopt takes no pointer and only retunes glibc's allocator (a value out of range
    // is refused, not undefined); it runs early in main, before any thread that could allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn convert(args: ConvertArgs) -> Result<(), String> {
    let root = match &args.root {
        Some(root) => root.clone(),
        None => args
            .input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| ".".into(), |p| p.to_path_buf()),
    };
    let settings = args.processing.settings();
    let styles = args.processing.styles().map_err(|e| e.to_string())?;
    let spec = Spec::parse(&args.spec, &styles).map_err(|e| e.to_string())?;
    let failed = |e: imgfs::Error| format!("{}: {e}", args.input.display());
    let root = Root::open(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    // The command line may name a symlink; the process's own permissions judge every
    // file it opens, so the caller here is the process itself, checked by the kernel.
    let source = Found::at(&args.input).map_err(failed)?;
    let inputs = Inputs::find(&root, source, &spec, &Caller::root()).map_err(failed)?;
    let (bytes, marks, _) = inputs.read(&args.input, &settings.limits).map_err(failed)?;
    let output = imgfs::pipeline::convert(&bytes, &marks, &spec, &settings).map_err(failed)?;
    if args.output.as_os_str() == "-" {
        std::io::stdout()
            .write_all(&output.bytes)
            .map_err(|e| format!("stdout: {e}"))?;
    } else {
        std::fs::write(&args.output, &output.bytes)
            .map_err(|e| format!("{}: {e}", args.output.display()))?;
    }
    Ok(())
}

fn stats(args: StatsArgs) -> Result<(), String> {
    // The mount renders a few KiB; a real `.imgfs` in the source (real names win) is the
    // source's to make, so it is read as untrusted text, and no link in it is followed.
    let text = imgfs::stats::read_metrics(&args.mountpoint)?;
    print!("{}", imgfs::stats::summarize(&text));
    Ok(())
}

fn mount(args: MountArgs, readiness: Option<Readiness>) -> Result<(), String> {
    // Each open file and each large cached variant (a memory file) holds a descriptor.
    imgfs::limits::raise_open_files_limit();
    let settings = args.processing.settings();
    let styles = args.processing.styles().map_err(|e| e.to_string())?;
    let defaults = MountOptions::default();
    let options = MountOptions {
        cache_bytes: args.cache_size,
        jobs: args.jobs.unwrap_or(defaults.jobs).max(1),
        convert_memory: args.convert_memory,
        fuse_threads: usize::from(args.fuse_threads),
        attr_ttl: Duration::from_secs_f64(args.attr_timeout.max(0.0)),
        error_ttl: Duration::from_secs_f64(args.error_timeout.max(0.0)),
        options: args.options.clone(),
        passthrough: !args.no_passthrough,
        errors: args.errors,
        disk_cache: (!args.no_disk_cache).then(|| args.disk.options()),
        listing_bytes: args.listing_memory,
        open_bytes: args.open_memory,
    };
    let mounted = imgfs::fuse::mount(&args.source, &args.mountpoint, settings, styles, &options)
        .map_err(|e| {
            format!(
                "cannot mount {} at {}: {e}",
                args.source.display(),
                args.mountpoint.display()
            )
        })?;
    info!(
        "serving {} at {} (cache {}, {} conversion jobs in {}); umount, Ctrl-C or SIGTERM unmounts",
        args.source.display(),
        args.mountpoint.display(),
        bytesize::ByteSize(options.cache_bytes),
        options.jobs,
        bytesize::ByteSize(options.convert_memory())
    );
    let mut unmounter = mounted.unmounter;
    let mountpoint = args.mountpoint.clone();
    let fs = mounted.fs.clone();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!("signal {signal}: unmounting {}", mountpoint.display());
                if let Err(err) = unmounter.unmount() {
                    // Busy (files open): detach now, let the conversions running finish and
                    // be written to disk, and end once readers are told.
                    warn!("unmount: {err}; detaching the mount");
                    detach(&mountpoint);
                    fs.converter().wait_idle(Duration::from_secs(60));
                    std::thread::sleep(Duration::from_secs(2));
                    std::process::exit(0);
                }
            }
        })
        .map_err(|e| e.to_string())?;
    if let Some(readiness) = readiness {
        readiness
            .ready()
            .map_err(|e| format!("cannot detach: {e}"))?;
    }
    mounted.session.run().map_err(|e| format!("session: {e}"))?;
    let converter = mounted.fs.converter();
    converter.wait_idle(Duration::from_secs(60));
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let disk_hits = converter.disk().map_or(0, |disk| count(&disk.stats.hits));
    info!(
        "unmounted; {} conversions, {disk_hits} variants from the disk cache",
        count(&converter.cache().stats.conversions)
    );
    Ok(())
}

fn detach(mountpoint: &std::path::Path) {
    use rustix::mount::{unmount, UnmountFlags};
    let _ = unmount(mountpoint, UnmountFlags::DETACH);
}
