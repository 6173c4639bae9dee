//! nginx serving a mount under a bounded load (wrk on 127.0.0.1, 2 threads, 32
//! connections): no errors, every body equal to a direct read, one conversion per distinct
//! variant (single-flight + cache), and the process's peak RSS within its budget.
//! Mounts: root and `/dev/fuse` needed.

use std::fs;
use std::process::Command;
use std::time::Instant;

use crate::common::nginx::Nginx;
use crate::common::{in_own_process, make_jpeg, run, Mount, MAGICK};
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

fn status_kb(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The lines of wrk's report that matter, parsed.
#[derive(Debug)]
struct WrkReport {
    requests: u64,
    per_second: f64,
    non_2xx: Option<String>,
    socket_errors: Option<String>,
}

fn parse_wrk(text: &str) -> WrkReport {
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{text}"));
    let per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    WrkReport {
        requests,
        per_second,
        non_2xx: text
            .lines()
            .find(|l| l.contains("Non-2xx"))
            .map(str::to_string),
        socket_errors: text
            .lines()
            .find(|l| l.contains("Socket errors"))
            .map(str::to_string),
    }
}

#[test]
fn nginx_under_load_serves_exact_bytes_with_one_conversion_per_variant() {
    if !in_own_process("load::nginx_under_load_serves_exact_bytes_with_one_conversion_per_variant")
    {
        return;
    }
    const SIDE: (u32, u32) = (1600, 1067);
    const CACHE_BYTES: u64 = 32 << 20;
    const JOBS: usize = 2;
    let m = Mount::with(
        MountOptions {
            cache_bytes: CACHE_BYTES,
            jobs: JOBS,
            ..MountOptions::default()
        },
        Settings::default(),
        Styles::default(),
        |src| {
            let a = src.join("a.jpg");
            make_jpeg(&a, SIDE.0, SIDE.1);
            run(
                MAGICK,
                &[a.to_str().unwrap(), src.join("b.png").to_str().unwrap()],
            );
            run(
                MAGICK,
                &[
                    a.to_str().unwrap(),
                    "-quality",
                    "80",
                    src.join("c.webp").to_str().unwrap(),
                ],
            );
        },
    );

    // Widths 100..=400 on three images and four output formats, plus the originals.
    let mut variants = Vec::new();
    for w in (100..=400).step_by(2) {
        variants.push(format!("a.jpg@resize,w_{w}"));
    }
    for w in (100..=400).step_by(10) {
        variants.push(format!("b.png@resize,w_{w}@format,jpg"));
        variants.push(format!("c.webp@resize,w_{w}@format,jpg"));
    }
    for w in (100..=400).step_by(50) {
        variants.push(format!("a.jpg@resize,w_{w}@format,webp"));
    }
    for l in (100..=400).step_by(20) {
        variants.push(format!("b.png@resize,l_{l}@format,png"));
    }
    let originals = ["a.jpg", "b.png", "c.webp"];
    let mut paths: Vec<String> = variants.clone();
    paths.extend(originals.iter().map(|s| s.to_string()));
    // Interleave so that both wrk threads hit new variants and repeats from the start.
    paths.sort_by_key(|p| {
        let h = p
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        h % 1009
    });
    assert!(variants.len() >= 200, "{} variants", variants.len());

    let nginx = Nginx::serve(&m.mnt);
    let script = nginx.dir.path().join("paths.lua");
    let list: Vec<String> = paths.iter().map(|p| format!("  \"/{p}\",")).collect();
    fs::write(
        &script,
        format!(
            "paths = {{\n{}\n}}\ncounter = 0\n\
             request = function()\n  counter = counter + 1\n  \
             return wrk.format(\"GET\", paths[(counter % #paths) + 1])\nend\n",
            list.join("\n")
        ),
    )
    .unwrap();

    let conversions_before = m.conversions();
    assert_eq!(conversions_before, 0);
    let rss_start = status_kb("VmRSS:");
    // Rounds of 6 s until every path has been requested about twice (one round on an idle
    // machine; more when other work shares the two cores), at most 4 rounds.
    let started = Instant::now();
    let mut requests = 0;
    let mut rounds = Vec::new();
    while requests < 2 * paths.len() as u64 && rounds.len() < 4 {
        let out = Command::new("wrk")
            .args([
                "-t2",
                "-c32",
                "-d6s",
                "--timeout",
                "30s",
                "-s",
                script.to_str().unwrap(),
                &format!("http://127.0.0.1:{}/", nginx.port),
            ])
            .output()
            .expect("wrk");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = parse_wrk(&text);
        assert!(
            report.non_2xx.is_none() && report.socket_errors.is_none(),
            "errors under load: {report:?}\n{text}\nnginx: {}",
            fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default()
        );
        requests += report.requests;
        rounds.push(format!("{} at {:.0}/s", report.requests, report.per_second));
    }
    let elapsed = started.elapsed();
    let rss_peak = status_kb("VmHWM:");
    eprintln!(
        "load: {requests} requests in {elapsed:?} (rounds: {}) over {} paths ({} variants); \
         RSS {rss_start} kB at start, peak {rss_peak} kB; {} conversions, {} hits",
        rounds.join(", "),
        paths.len(),
        variants.len(),
        m.conversions(),
        m.cache
            .stats
            .hits
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        requests >= paths.len() as u64,
        "only {requests} requests for {} paths",
        paths.len()
    );

    // After the load: each body as nginx sends it equals a direct read of the mount.
    for p in &paths {
        let (status, _, body) = nginx.get(p);
        assert_eq!(status, 200, "{p}");
        let direct = fs::read(m.path(p)).unwrap();
        assert_eq!(body.len(), direct.len(), "{p}: length");
        assert!(body == direct, "{p}: bytes differ from a direct read");
        assert_eq!(fs::metadata(m.path(p)).unwrap().len(), direct.len() as u64);
    }
    for o in originals {
        assert_eq!(
            fs::read(m.path(o)).unwrap(),
            fs::read(m.source.join(o)).unwrap()
        );
    }
    // One conversion per distinct variant: single-flight under concurrency, then the cache.
    assert_eq!(m.conversions(), variants.len() as u64);
    assert_eq!(
        m.cache
            .stats
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // Memory: the cache budget, plus JOBS conversions each holding about 1.5 decoded frames
    // (source pixels + the resized copy + encoder buffers), plus a fixed 96 MiB for what is
    // not the conversions: fuser's request buffers (16 MiB per thread × 4 FUSE threads at
    // most, touched only as far as requests fill them), thread stacks, malloc arenas and
    // the test harness. The baseline is the RSS measured before the load started.
    let frame = u64::from(SIDE.0) * u64::from(SIDE.1) * 4;
    let budget_kb = rss_start + (CACHE_BYTES + JOBS as u64 * frame * 3 / 2) / 1024 + 96 * 1024;
    assert!(
        rss_peak <= budget_kb,
        "peak RSS {rss_peak} kB over the budget {budget_kb} kB (start {rss_start} kB)"
    );
}
