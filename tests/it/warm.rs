//! `imgfs warm` (the binary), then a mount (root and /dev/fuse) that converts nothing.

use std::os::unix::fs::symlink;
use std::process::Command;
use std::sync::atomic::Ordering;

use imgfs::options::{DiskCacheOptions, MountOptions};

use crate::common::{bin, make_jpeg, Mount};

fn warm(source: &std::path::Path, cache: &std::path::Path, specs: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .arg("warm")
        .arg(source)
        .args(specs)
        .arg("--disk-cache")
        .arg(cache)
        .args(["--jobs", "2", "--style", "thumb=resize,w_60"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `imgfs warm SOURCE ARGS --disk-cache CACHE --jobs 1` started, its output piped.
fn spawn_warm(
    source: &std::path::Path,
    cache: &std::path::Path,
    args: &[&str],
) -> std::process::Child {
    Command::new(bin())
        .arg("warm")
        .arg(source)
        .args(args)
        .arg("--disk-cache")
        .arg(cache)
        .args(["--jobs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn warm_then_mount_converts_nothing() {
    let outside = tempfile::tempdir().unwrap();
    make_jpeg(&outside.path().join("secret.jpg"), 64, 64);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    make_jpeg(&src.join("a.jpg"), 300, 200);
    std::fs::create_dir_all(src.join("deep/er")).unwrap();
    make_jpeg(&src.join("deep/er/b.jpg"), 200, 300);
    // Recognised by content, not by name.
    std::fs::copy(src.join("a.jpg"), src.join("deep/no-extension")).unwrap();
    std::fs::write(src.join("notes.txt"), b"not an image").unwrap();
    symlink(outside.path().join("secret.jpg"), src.join("out.jpg")).unwrap();
    let source = src.to_path_buf();
    let cache = tempfile::tempdir().unwrap();
    let specs = ["format,webp@resize,w_100", "style,thumb"];
    let (ok, text) = warm(&source, cache.path(), &specs);
    assert!(ok, "{text}");
    assert!(
        text.contains("warm: 6 converted, 0 skipped (cached), 0 failed"),
        "{text}"
    );
    let (ok, text) = warm(&source, cache.path(), &specs);
    assert!(
        ok && text.contains("warm: 0 converted, 6 skipped"),
        "{text}"
    );

    let options = MountOptions {
        disk_cache: Some(DiskCacheOptions {
            dir: cache.path().to_path_buf(),
            bytes: 1 << 30,
        }),
        ..MountOptions::default()
    };
    let m = Mount::over(&source, options.clone());
    for file in ["a.jpg", "deep/er/b.jpg", "deep/no-extension"] {
        for spec in ["format,webp@resize,w_100", "resize,w_60"] {
            let name = format!("{file}@{spec}");
            let bytes = std::fs::read(m.path(&name)).unwrap();
            assert!(image::load_from_memory(&bytes).is_ok(), "{name}");
        }
    }
    assert_eq!(m.conversions(), 0);
    let disk = m.disk().unwrap();
    assert_eq!(disk.stats.hits.load(Ordering::Relaxed), 6);
    assert!(!cache.path().join("out.jpg").exists());
    drop(m);

    // Issue 13: a whole-tree view of a warmed style lists at once, converting nothing.
    let mut styles = imgfs::spec::Styles::default();
    styles.add("thumb", "resize,w_60").unwrap();
    let m = Mount::over_styled(&source, options, styles);
    let view = m.path("@style,thumb");
    let listing = Command::new("ls").arg("-lR").arg(&view).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(" a.jpg") && listing.contains(" b.jpg"),
        "{listing}"
    );
    for shown in ["a.jpg", "deep/er/b.jpg"] {
        let bytes = std::fs::read(view.join(shown)).unwrap();
        assert_eq!(
            image::load_from_memory(&bytes).unwrap().width(),
            60,
            "{shown}"
        );
    }
    assert_eq!(m.conversions(), 0, "{listing}");
}

#[test]
fn warm_reports_failures_and_bad_specs() {
    let source = tempfile::tempdir().unwrap();
    make_jpeg(&source.path().join("good.jpg"), 100, 100);
    // JPEG magic, then nothing decodable.
    std::fs::write(
        source.path().join("broken.jpg"),
        b"\xff\xd8\xff\xe0 garbage",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (ok, text) = warm(source.path(), cache.path(), &["format,png"]);
    assert!(!ok);
    assert!(
        text.contains("1 converted, 0 skipped (cached), 1 failed"),
        "{text}"
    );
    assert!(text.contains("failed: broken.jpg@format,png:"), "{text}");
    let (ok, text) = warm(source.path(), cache.path(), &["resize,w_0"]);
    assert!(!ok && text.contains("resize,w_0"), "{text}");
}

/// Ctrl-C (SIGINT) stops taking work; what was converted stays and the next run skips it.
#[test]
fn an_interrupted_warm_keeps_what_is_done() {
    use std::io::{BufRead, BufReader, Read};
    let source = tempfile::tempdir().unwrap();
    for n in 0..12 {
        make_jpeg(&source.path().join(format!("{n:02}.jpg")), 900, 600);
    }
    let cache = tempfile::tempdir().unwrap();
    let specs = ["format,heic", "resize,l_300@format,heic"];
    let mut child = spawn_warm(source.path(), cache.path(), &specs);
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains(": converted") {
        let mut line = String::new();
        assert!(log.read_line(&mut line).unwrap() > 0, "{seen}");
        seen += &line;
    }
    // SAFETY: kill(2) on our own child, which has not been waited for (its pid is live).
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    log.read_to_string(&mut seen).unwrap();
    let mut summary = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut summary)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{summary}{seen}");
    assert!(summary.contains("interrupted"), "{summary}{seen}");
    let done = |text: &str, what: &str| -> usize {
        let at = text.find(what).unwrap_or_else(|| panic!("{what}: {text}"));
        let number = text[..at].trim_end().rsplit([' ', ',']).next().unwrap();
        number.parse().unwrap()
    };
    let converted = done(&summary, " converted");
    assert!((1..24).contains(&converted), "{summary}");
    for sub in std::fs::read_dir(cache.path()).unwrap().flatten() {
        if sub.path().is_dir() {
            for file in std::fs::read_dir(sub.path()).unwrap().flatten() {
                let name = file.file_name().to_string_lossy().to_string();
                assert!(
                    !name.starts_with(".tmp-"),
                    "a temporary file was left: {name}"
                );
            }
        }
    }

    let (ok, text) = warm(source.path(), cache.path(), &specs);
    assert!(ok, "{text}");
    assert_eq!(done(&text, " skipped"), converted, "{text}");
    assert_eq!(done(&text, " converted"), 24 - converted, "{text}");
}

/// The third hostile review of 2026-12-03: a directory nested past PATH_MAX no longer ends
/// the run before anything is converted (directories are opened relative to their parent),
/// and one that cannot be opened is one failure, with its path and why, while the rest is
/// warmed. Run as `nobody`, for whom a directory of mode 000 is unreadable.
#[test]
fn a_deep_or_unreadable_directory_is_one_failure_and_the_rest_is_warmed() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let base = tempfile::tempdir().unwrap();
    let mode = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(base.path(), 0o755);
    let src = base.path().join("src");
    std::fs::create_dir_all(src.join("photos")).unwrap();
    std::fs::create_dir(src.join("locked")).unwrap();
    make_jpeg(&src.join("photos/1.jpg"), 64, 64);
    make_jpeg(&src.join("photos/2.jpg"), 80, 64);
    make_jpeg(&src.join("locked/3.jpg"), 64, 80);
    mode(&src.join("locked"), 0o000);
    // 17 levels of 250-byte names: 4267 bytes of path, past PATH_MAX.
    let deep = Command::new("bash")
        .arg("-c")
        .arg("for i in $(seq 17); do d=$(printf 'd%.0s' $(seq 250)); mkdir $d && cd $d; done")
        .current_dir(&src)
        .status()
        .unwrap();
    assert!(deep.success());
    let cache = base.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    mode(&cache, 0o700);
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    let out = Command::new(bin())
        .arg("warm")
        .arg(&src)
        .arg("format,webp")
        .arg("--disk-cache")
        .arg(&cache)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("warm: 2 converted, 0 skipped (cached), 1 failed"),
        "{text}"
    );
    assert!(
        text.contains("failed: locked: not walked: Permission denied"),
        "{text}"
    );
    assert_eq!(
        text.matches("locked: not walked").count(),
        2,
        "a log line and the summary's: {text}"
    );
}

/// The fourth hostile review of 2026-12-03: every directory the walk could not open was kept,
/// logged and printed with its whole path, so a source writer's empty directories below the
/// descriptor limit grew warm's memory and output without limit. Under `prlimit --nofile=64`
/// (soft = hard, nothing to raise) a chain of 100 levels runs out of descriptors some 60
/// levels down, where each level holds SIBLINGS empty directories: SIBLINGS + 1 failures,
/// all counted, the first SHOWN_FAILURES shown (log and summary), each line short. With a
/// hard limit above it, warm raises its soft limit and walks the whole chain.
#[test]
fn failures_past_the_descriptor_limit_are_counted_and_the_output_stays_bounded() {
    use imgfs::warm::SHOWN_FAILURES;
    const LEVELS: usize = 100;
    const SIBLINGS: usize = 120;
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    // 100 levels of 30-byte names: 3.1 KB of path, within PATH_MAX.
    let mut chain = src.clone();
    for level in 1..=LEVELS {
        chain.push("d".repeat(30));
        std::fs::create_dir_all(&chain).unwrap();
        // Wherever the 64 descriptors run out (past the few warm holds before its walk).
        if (40..=63).contains(&level) {
            for n in 0..SIBLINGS {
                std::fs::create_dir(chain.join(format!("s{n}"))).unwrap();
            }
        }
    }
    make_jpeg(&chain.join("deep.jpg"), 64, 64);
    let cache = base.path().join("cache");
    let run = |nofile: &str| {
        let out = Command::new("prlimit")
            .arg(format!("--nofile={nofile}"))
            .arg(bin())
            .arg("warm")
            .arg(&src)
            .arg("format,webp")
            .arg("--disk-cache")
            .arg(&cache)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = run("64:64");
    assert!(!ok, "{text}");
    let failed = SIBLINGS + 1;
    assert!(
        text.contains(&format!(
            "warm: 0 converted, 0 skipped (cached), {failed} failed"
        )),
        "{text}"
    );
    let not_walked: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(": not walked: "))
        .collect();
    assert_eq!(
        not_walked.len(),
        2 * SHOWN_FAILURES,
        "logged and listed: {text}"
    );
    assert!(
        not_walked
            .iter()
            .all(|line| line.contains("Too many open files")
                && line.contains("…/")
                && line.len() < imgfs::logging::SHORT_PATH_BYTES + 200),
        "{not_walked:#?}"
    );
    assert!(
        text.contains(&format!(
            "more than {SHOWN_FAILURES} failures: the rest are counted, not shown"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "… and {} more failures, not shown",
            failed - SHOWN_FAILURES
        )),
        "{text}"
    );
    assert!(text.len() < 64 << 10, "{} bytes of output", text.len());

    let (ok, text) = run("64:4096");
    assert!(ok, "{text}");
    assert!(
        text.contains("warm: 1 converted, 0 skipped (cached), 0 failed"),
        "{text}"
    );
}

/// The third hostile review of 2026-12-03: hard links of one image (cheap for anyone who may
/// write in the tree) are one file to warm, converted once; the other names are counted,
/// not kept, so warm's memory no longer grows with them.
#[test]
fn hard_links_of_one_image_are_warmed_once() {
    let source = tempfile::tempdir().unwrap();
    let src = source.path();
    make_jpeg(&src.join("a.jpg"), 120, 80);
    make_jpeg(&src.join("b.jpg"), 80, 120);
    std::fs::create_dir(src.join("links")).unwrap();
    for n in 0..30 {
        std::fs::hard_link(src.join("a.jpg"), src.join(format!("links/{n:02}.jpg"))).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let (ok, text) = warm(src, cache.path(), &["format,webp"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "warm: 2 converted, 0 skipped (cached), 0 failed, \
             30 hard link(s) skipped (same file as a name listed)"
        ),
        "{text}"
    );
    assert_eq!(text.matches(": converted").count(), 2, "{text}");
}

/// The third hostile review of 2026-12-03: a second Ctrl-C exits at once (status 130), not
/// after the conversion running, however long; the next run starts cleanly.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};
    let source = tempfile::tempdir().unwrap();
    make_jpeg(&source.path().join("big.jpg"), 4000, 4000);
    let cache = tempfile::tempdir().unwrap();
    let specs = ["format,avif", "format,heic", "--target-quality", "90"];
    let mut child = spawn_warm(source.path(), cache.path(), &specs);
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id() as i32;
    let interrupt = || {
        // SAFETY: kill(2) on our own child, which has not been waited for (its pid is live).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    };
    interrupt();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the conversion ended too soon to test"
    );
    interrupt();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(3) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("still converting 3 s after a second SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(status.signal(), None);
    let (ok, text) = warm(source.path(), cache.path(), &["format,webp@resize,w_100"]);
    assert!(ok, "{text}");
}
