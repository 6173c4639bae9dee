//! imgfs mounted the way a system mounts it: an fstab line through util-linux mount(8) and
//! Debian's mount.fuse3, which runs `imgfs SRC MNT -o OPTS` found in the standard PATH that
//! mount(8) sets (it ignores the caller's). So that the freshly built binary is the one
//! found without touching the machine's /usr/local/bin, each test runs mount(8) in a private
//! mount namespace (unshare) where /usr/local/bin is a directory holding an `imgfs` link to
//! it; the mount lives in that namespace, reached through /proc/PID/root of the daemon and
//! unmounted by nsenter. Root and `/dev/fuse` needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{bin, inspect, make_jpeg};

/// A source, a mountpoint, an fstab naming them, and the directory that stands in for
/// /usr/local/bin.
struct Setup {
    source: PathBuf,
    mnt: PathBuf,
    fstab: PathBuf,
    local_bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(source_name: &str, options: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (source, mnt, local_bin) = (
            dir.path().join(source_name),
            dir.path().join("mnt"),
            dir.path().join("local-bin"),
        );
        fs::create_dir(&mnt).unwrap();
        fs::create_dir(&local_bin).unwrap();
        std::os::unix::fs::symlink(bin(), local_bin.join("imgfs")).unwrap();
        let fstab = dir.path().join("fstab");
        // The disk cache in the test's own directory, never the machine's /var/cache/imgfs.
        let line = format!(
            "{} {} fuse.imgfs {options},disk_cache={} 0 0\n",
            source.display(),
            mnt.display(),
            dir.path().join("cache").display()
        );
        fs::write(&fstab, line).unwrap();
        Setup {
            source,
            mnt,
            fstab,
            local_bin,
            dir,
        }
    }

    /// `mount -T FSTAB MNT` in a new mount namespace where /usr/local/bin holds our imgfs.
    fn mount(&self) -> Output {
        let script = format!(
            "mount --bind '{}' /usr/local/bin && exec mount -T '{}' '{}'",
            self.local_bin.display(),
            self.fstab.display(),
            self.mnt.display()
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .expect("unshare (util-linux)")
    }

    /// The detached imgfs serving this setup's source, by its command line.
    fn daemon(&self) -> Option<u32> {
        let source = self.source.to_str().unwrap();
        fs::read_dir("/proc").unwrap().flatten().find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_ours = args.first()?.ends_with(b"imgfs") && args.contains(&source.as_bytes());
            (is_ours && alive(pid)).then_some(pid)
        })
    }
}

/// Running (not a zombie waiting for whoever adopted it to reap it).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// A path as the process `pid` sees it (the mount exists only in its namespace).
fn seen_by(pid: u32, path: &Path) -> PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap())
}

#[test]
fn fstab_mount_serves_shows_and_unmounts() {
    let setup = Setup::new("photos", "allow_other,cache_size=64MiB,jobs=2,nofail");
    fs::create_dir(&setup.source).unwrap();
    make_jpeg(&setup.source.join("a.jpg"), 400, 267);
    let out = setup.mount();
    assert!(
        out.status.success(),
        "mount -T: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The parent exited once the mount was up, so the mount is there now.
    let pid = setup
        .daemon()
        .expect("imgfs runs detached after mount(8) returned");
    let mounts = fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == setup.mnt.to_str())
        .unwrap_or_else(|| panic!("not in /proc/{pid}/mounts:\n{mounts}"));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], setup.source.to_str().unwrap(), "{line}");
    assert_eq!(fields[2], "fuse.imgfs", "{line}");
    assert!(fields[3].starts_with("ro,nosuid,nodev"), "{line}");
    assert!(fields[3].contains("allow_other"), "{line}");
    // The options reached `imgfs mount` as its own: the detached command line shows them.
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("cache_size=64MiB"), "{cmdline:?}");

    let variant = seen_by(pid, &setup.mnt.join("a.jpg@resize,w_200@format,webp"));
    let bytes = fs::read(&variant).unwrap();
    let copy = setup.dir.path().join("variant.webp");
    fs::write(&copy, &bytes).unwrap();
    assert_eq!(inspect(&copy), ("webp".to_string(), 200, 134));
    assert_eq!(
        fs::read(seen_by(pid, &setup.mnt.join("a.jpg"))).unwrap(),
        fs::read(setup.source.join("a.jpg")).unwrap()
    );

    let namespace = format!("--mount=/proc/{pid}/ns/mnt");
    let out = Command::new("nsenter")
        .args([namespace.as_str(), "umount", setup.mnt.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "imgfs still runs 10 s after umount");
}

#[test]
fn failed_fstab_mount_exits_non_zero_with_the_error() {
    // The fstab names a source that does not exist.
    let setup = Setup::new("missing", "allow_other,nofail");
    let out = setup.mount();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mount succeeded: {stderr}");
    assert!(
        stderr.contains(setup.source.to_str().unwrap()) && stderr.contains("No such file"),
        "{stderr}"
    );
    assert_eq!(setup.daemon(), None, "a failed mount left imgfs running");
}

#[test]
fn unknown_option_values_fail_before_detaching() {
    let setup = Setup::new("photos", "cache_size=lots");
    fs::create_dir(&setup.source).unwrap();
    let out = setup.mount();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mount succeeded: {stderr}");
    assert!(stderr.contains("lots"), "{stderr}");
}

#[test]
fn a_mountpoint_inside_the_source_is_refused() {
    // Hostile review of 2026-12-03: below its own source, every walk of the tree entered
    // the mount again, each level holding one of the mount's request threads.
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("photos");
    fs::create_dir_all(source.join("sub/mnt")).unwrap();
    fs::create_dir_all(scratch.path().join("mnt")).unwrap();
    // Through a symlink too: judged by the directory, not by the name.
    std::os::unix::fs::symlink(source.join("sub"), scratch.path().join("link")).unwrap();
    for mountpoint in [source.join("sub/mnt"), scratch.path().join("link/mnt")] {
        let out = Command::new(bin())
            .arg("mount")
            .arg(&source)
            .arg(&mountpoint)
            .arg("--no-disk-cache")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mounted: {stderr}");
        assert!(
            stderr.contains("the mountpoint is inside the source directory"),
            "{stderr}"
        );
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(source.join("sub/mnt").to_str().unwrap()),
            "{mounts}"
        );
    }
}
