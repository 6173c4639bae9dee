//! Running and timing commands, medians, and the Markdown tables every case prints.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub type Res<T> = Result<T, String>;

/// Runs `cmd` (stdout discarded), fails on a non-zero exit, returns the wall time in seconds.
pub fn run(cmd: &mut Command) -> Res<f64> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{cmd:?} failed ({}): {}", out.status, err.trim()));
    }
    Ok(secs)
}

/// Like [`run`], also returning the CPU seconds (user + sys) the command and its waited-for
/// descendants used: far less sensitive than wall time to other load on the machine.
pub fn run_cpu(cmd: &mut Command) -> Res<(f64, f64)> {
    let before = children_cpu();
    let wall = run(cmd)?;
    Ok((wall, children_cpu() - before))
}

/// Runs `cmd` to the end and returns its peak RSS in bytes: VmHWM polled every 2 ms (wait4's
/// ru_maxrss would include this big process's RSS, inherited across fork and exec).
pub fn peak_rss(cmd: &mut Command) -> Res<u64> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let kib = text.lines().find_map(|l| l.strip_prefix("VmHWM:"));
            let kib = kib.and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(kib.unwrap_or(0) * 1024);
        }
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) if s.success() => return Ok(peak),
            Some(s) => return Err(format!("{cmd:?} failed ({s})")),
            None => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
}

fn children_cpu() -> f64 {
    // SAFETY: rusage is plain integers (timevals and longs), for which all-zero bytes are valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live, writable rusage and RUSAGE_CHILDREN a valid `who`; getrusage
    // writes only that struct (and on failure leaves it zero).
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A command's stdout (first line), for tool versions; "?" when it cannot run.
pub fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "?".into())
}

pub fn time<T>(f: impl FnOnce() -> Res<T>) -> Res<(f64, T)> {
    let start = Instant::now();
    let value = f()?;
    Ok((start.elapsed().as_secs_f64(), value))
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn file_len(path: &Path) -> Res<u64> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn secs(s: f64) -> String {
    if s < 0.1 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

pub fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

pub fn bytes(n: u64) -> String {
    format!("{n}")
}

pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / 1048576.0)
}

/// One Markdown table with a heading and a note under it.
pub struct Table {
    pub title: String,
    pub note: String,
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, head: Vec<&'static str>) -> Table {
        Table { title: title.into(), note: String::new(), head, rows: Vec::new() }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("## {}\n\n", self.title);
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out += &line(&self.head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        out += &line(&self.head.iter().map(|_| "---".to_string()).collect::<Vec<_>>());
        for row in &self.rows {
            out += &line(row);
        }
        if !self.note.is_empty() {
            out += &format!("\n{}\n", self.note.trim());
        }
        out + "\n"
    }
}
