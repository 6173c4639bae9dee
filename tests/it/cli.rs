//! The binary: `convert`, `--help`, the man page, and the mount's life cycle under signals.
//! The life-cycle tests start `imgfs mount`, so they need root and `/dev/fuse`; the others
//! need neither.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, inspect, is_mounted, make_jpeg};

#[test]
fn convert_accepts_both_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jpg");
    make_jpeg(&input, 400, 267);
    for (spec, expected) in [
        ("format,heic@resize,l_200", ("heic", 200, 134)),
        ("image/format,webp/resize,w_100", ("webp", 100, 67)),
        ("image/format,avif/rotate,90", ("avif", 267, 400)),
    ] {
        let out = dir.path().join("out");
        let status = Command::new(bin())
            .args([
                "convert",
                input.to_str().unwrap(),
                spec,
                "-o",
                out.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "{spec}");
        let (format, w, h) = inspect(&out);
        assert_eq!((format.as_str(), w, h), expected, "{spec}");
    }
}

#[test]
fn convert_errors_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jpg");
    make_jpeg(&input, 40, 30);
    fs::write(dir.path().join("bad.jpg"), b"not an image").unwrap();
    let cases = [
        (
            input.to_str().unwrap().to_string(),
            "resize,w_0",
            "resize w",
        ),
        (
            input.to_str().unwrap().to_string(),
            "sepia",
            "unknown operation",
        ),
        (
            dir.path().join("bad.jpg").to_str().unwrap().to_string(),
            "format,png",
            "not a recognised image",
        ),
        (
            dir.path().join("missing.jpg").to_str().unwrap().to_string(),
            "format,png",
            "missing.jpg",
        ),
    ];
    for (input, spec, message) in cases {
        let out = Command::new(bin())
            .args([
                "convert",
                &input,
                spec,
                "-o",
                dir.path().join("o").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{spec}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
    assert!(!dir.path().join("o").exists());
}

/// Regenerate with `IMGFS_UPDATE_MAN=1 cargo test --test it man_page`.
#[test]
fn man_page_is_generated_from_the_cli() {
    let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let command = imgfs::cli::command();
    let mut pages = vec![("imgfs.1".to_string(), command.clone())];
    for sub in command.get_subcommands() {
        let name = format!("imgfs-{}", sub.get_name());
        let file = format!("{name}.1");
        pages.push((file, sub.clone().name(&*name.leak())));
    }
    for (file, cmd) in pages {
        let mut rendered = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut rendered).unwrap();
        let path = man_dir.join(&file);
        if std::env::var_os("IMGFS_UPDATE_MAN").is_some() {
            fs::create_dir_all(&man_dir).unwrap();
            fs::write(&path, &rendered).unwrap();
        }
        let checked_in = fs::read(&path).unwrap_or_default();
        assert!(
            checked_in == rendered,
            "man/{file} is stale: run IMGFS_UPDATE_MAN=1 cargo test --test it man_page"
        );
    }
}

#[test]
fn help_names_every_default() {
    let out = Command::new(bin())
        .args(["mount", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "512MiB",
        "20MB",
        "30000",
        "250000000",
        "16384",
        "16777216",
        "--jobs",
        "allow_other",
        "[default: 85]",
        "[default: 44]",
        "[default: 4GiB]",
        "/var/cache/imgfs",
        "--no-disk-cache",
    ] {
        assert!(
            help.contains(needle),
            "mount --help lacks {needle}:\n{help}"
        );
    }
}

fn mount_binary(source: &Path, mnt: &Path) -> std::process::Child {
    mount_binary_with(source, mnt, &["--no-disk-cache"])
}

fn mount_binary_with(source: &Path, mnt: &Path, args: &[&str]) -> std::process::Child {
    let child = Command::new(bin())
        .args(["mount", source.to_str().unwrap(), mnt.to_str().unwrap()])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !is_mounted(mnt) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "mount did not appear"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
}

#[test]
fn sigterm_and_sigint_unmount_cleanly_even_with_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir_all(&source).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    make_jpeg(&source.join("p.jpg"), 64, 48);
    for (sig, hold_open) in [
        (libc::SIGTERM, false),
        (libc::SIGINT, false),
        (libc::SIGTERM, true),
    ] {
        let mut child = mount_binary(&source, &mnt);
        assert!(!fs::read(mnt.join("p.jpg@format,png")).unwrap().is_empty());
        let held = hold_open.then(|| fs::File::open(mnt.join("p.jpg@format,webp")).unwrap());
        signal(&child, sig);
        let status = child.wait().unwrap();
        drop(held);
        assert!(status.success(), "signal {sig}: exit {status:?}");
        assert!(!is_mounted(&mnt), "signal {sig}: mount left behind");
    }
}

#[test]
fn after_sigkill_fusermount_and_a_new_mount_work() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir_all(&source).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    make_jpeg(&source.join("p.jpg"), 64, 48);
    let mut child = mount_binary(&source, &mnt);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert!(fs::read_dir(&mnt).is_err(), "a dead mount answers ENOTCONN");
    crate::common::run("fusermount3", &["-u", mnt.to_str().unwrap()]);
    let mut child = mount_binary(&source, &mnt);
    assert!(!fs::read(mnt.join("p.jpg@format,png")).unwrap().is_empty());
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    assert!(!is_mounted(&mnt));
}

/// Requests any user can send (python's isatty probe, fsync, poll, SEEK_DATA, access) get
/// the answers a regular file on a read-only disk gives, and no log line each: an
/// unprivileged caller must not be able to flood the log.
#[test]
fn requests_imgfs_does_not_serve_answer_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir_all(&source).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    make_jpeg(&source.join("p.jpg"), 64, 48);
    let mut child = mount_binary(&source, &mnt);
    for name in ["p.jpg", "p.jpg@format,png"] {
        let path = mnt.join(name);
        let file = fs::File::open(&path).unwrap();
        let len = file.metadata().unwrap().len() as i64;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: plain syscalls on a descriptor this scope owns; `term` and `poll` are
        // valid for writes of their own size.
        unsafe {
            let mut term: libc::termios = std::mem::zeroed();
            assert_eq!(libc::ioctl(fd, libc::TCGETS, &mut term), -1, "{name}");
            assert_eq!(*libc::__errno_location(), libc::ENOTTY, "{name}");
            for _ in 0..2 {
                assert_eq!(libc::fsync(fd), 0, "{name}");
                assert_eq!(libc::lseek(fd, 0, libc::SEEK_DATA), 0, "{name}");
                assert_eq!(libc::lseek(fd, 0, libc::SEEK_HOLE), len, "{name}");
            }
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            assert_eq!(libc::poll(&mut poll, 1, 0), 1, "{name}");
        }
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::access(c_path.as_ptr(), libc::R_OK) }, 0);
        assert!(crate::common::run("cp", &[path.to_str().unwrap(), "/dev/null"]).is_empty());
    }
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        !log.contains("WARN") && !log.contains("Not Implemented"),
        "{log}"
    );
}

/// SIGTERM while a file is open (a busy unmount, so the mount is detached) and a conversion
/// runs: the conversion still finishes and is written, and the next mount serves it from
/// disk without converting.
#[test]
fn a_busy_unmount_keeps_the_conversion_running_on_disk() {
    use imgfs::options::{DiskCacheOptions, MountOptions};
    let dir = tempfile::tempdir().unwrap();
    let (source, mnt, cache) = (
        dir.path().join("src"),
        dir.path().join("mnt"),
        dir.path().join("cache"),
    );
    fs::create_dir_all(&source).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    make_jpeg(&source.join("p.jpg"), 4000, 3000);
    let mut child = mount_binary_with(&source, &mnt, &["--disk-cache", cache.to_str().unwrap()]);
    let start = Instant::now();
    let held = fs::File::open(mnt.join("p.jpg")).unwrap();
    let variant = mnt.join("p.jpg@format,heic");
    let reader = std::thread::spawn(move || fs::read(variant).map(|b| b.len()));
    // Until the conversion has started (counted as it starts).
    while !fs::read_to_string(mnt.join(".imgfs/metrics"))
        .unwrap()
        .contains("imgfs_conversions_total 1")
    {
        assert!(start.elapsed() < Duration::from_secs(20), "no conversion");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    drop(held);
    let read = reader.join().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("detaching"), "not a busy unmount: {log}");
    assert!(!is_mounted(&mnt), "{log}");

    let options = MountOptions {
        disk_cache: Some(DiskCacheOptions {
            dir: cache.clone(),
            bytes: 1 << 30,
        }),
        ..MountOptions::default()
    };
    let m = crate::common::Mount::over(&source, options);
    let bytes = fs::read(m.path("p.jpg@format,heic")).unwrap();
    assert_eq!(m.conversions(), 0, "the conversion was lost: {log}");
    if let Ok(len) = read {
        assert_eq!(len, bytes.len());
    }
    assert_eq!(
        inspect(&m.path("p.jpg@format,heic")),
        ("heic".to_string(), 4000, 3000)
    );
}

/// The fourth hostile review of 2026-12-03: a real `.imgfs` in the source wins over the
/// mount's own, and `imgfs stats` (often run by root) followed its `metrics` if a symlink,
/// opening whatever the source's writer named. It is refused, naming why, and what the
/// link points at is never read; the mount's own metrics file still is.
#[test]
fn stats_refuses_a_planted_metrics_symlink() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, "imgfs_conversions_total 4242\nSECRET-LINE\n").unwrap();
    let stats = |mnt: &Path| {
        let out = Command::new(bin()).arg("stats").arg(mnt).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let planted = crate::common::Mount::new_with_files(|src| {
        fs::create_dir(src.join(".imgfs")).unwrap();
        symlink(&secret, src.join(".imgfs/metrics")).unwrap();
    });
    let (ok, text) = stats(&planted.mnt);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            ".imgfs/metrics: not imgfs's metrics file (a symbolic link or another file system)"
        ),
        "{text}"
    );
    assert!(!text.contains("4242") && !text.contains("SECRET"), "{text}");
    drop(planted);
    let mine = crate::common::Mount::new();
    let (ok, text) = stats(&mine.mnt);
    assert!(ok, "{text}");
    assert!(text.contains("conversions    0, 0 failed"), "{text}");
}
