//! The disk tier through real mounts (root and /dev/fuse): variants survive a remount, a
//! changed source is converted again, the bound holds, damaged entries are never served,
//! SIGKILL and a full disk lose only cache, and two mounts share one directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use imgfs::options::{DiskCacheOptions, MountOptions};
use imgfs::spec::Styles;

use crate::common::{self, bin, convert_name, inspect, is_mounted, make_jpeg, Mount};

/// A small variant (memory tier) and a large one (served from the cache file).
const SMALL: &str = "a.jpg@resize,w_200@format,webp";
const LARGE: &str = "a.jpg@format,png";

fn with_disk(dir: &Path, bytes: u64) -> MountOptions {
    MountOptions {
        jobs: 2,
        disk_cache: Some(DiskCacheOptions {
            dir: dir.to_path_buf(),
            bytes,
        }),
        ..MountOptions::default()
    }
}

fn photo(source: &Path) {
    make_jpeg(&source.join("a.jpg"), 1200, 800);
}

/// A mount of a fresh source holding `a.jpg`, with its disk cache in `cache`.
fn photo_mount(cache: &Path) -> Mount {
    let options = with_disk(cache, 1 << 30);
    Mount::with(options, Default::default(), Styles::default(), photo)
}

fn expected(source: &Path, name: &str) -> Vec<u8> {
    convert_name(source, &Styles::default(), name).unwrap()
}

/// Entries in the cache directory (files named by their hash, in two-letter subdirs).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap().flatten() {
        if sub.path().is_dir() {
            let files = std::fs::read_dir(sub.path()).unwrap().flatten();
            found.extend(
                files
                    .map(|f| f.path())
                    .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')),
            );
        }
    }
    found
}

#[test]
fn a_remount_serves_variants_from_disk_without_converting() {
    let cache = tempfile::tempdir().unwrap();
    let first = photo_mount(cache.path());
    let small = std::fs::read(first.path(SMALL)).unwrap();
    let large = std::fs::read(first.path(LARGE)).unwrap();
    assert!(
        large.len() > imgfs::cache::MEMORY_FILE_MIN,
        "{}",
        large.len()
    );
    assert_eq!(first.conversions(), 2);
    first.settle();
    let source = first.source.clone();
    let again = Mount::over(&source, with_disk(cache.path(), 1 << 30));
    // Exact sizes at lookup, the same bytes, no conversion.
    assert_eq!(
        std::fs::metadata(again.path(SMALL)).unwrap().len(),
        small.len() as u64
    );
    assert_eq!(
        std::fs::metadata(again.path(LARGE)).unwrap().len(),
        large.len() as u64
    );
    assert_eq!(std::fs::read(again.path(SMALL)).unwrap(), small);
    assert_eq!(std::fs::read(again.path(LARGE)).unwrap(), large);
    assert_eq!(again.conversions(), 0);
    let disk = again.disk().unwrap();
    assert_eq!(disk.stats.hits.load(Ordering::Relaxed), 2);
    assert_eq!(large, expected(&source, LARGE));
    // The same, as an operator reads it through the kernel: the metrics file.
    let metrics = std::fs::read_to_string(again.path(".imgfs/metrics")).unwrap();
    for line in [
        "imgfs_conversions_total 0",
        "imgfs_cache_hits_total{tier=\"disk\"} 2",
        "imgfs_cache_misses_total 0",
        "imgfs_cache_entries{tier=\"disk\"} 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    drop(first);
}

#[test]
fn a_changed_source_is_converted_again() {
    let cache = tempfile::tempdir().unwrap();
    let first = photo_mount(cache.path());
    let old = std::fs::read(first.path(SMALL)).unwrap();
    first.settle();
    // The first mount stays (its temporary directory holds the source); a new one follows.
    let source = first.source.clone();
    make_jpeg(&source.join("a.jpg"), 900, 600);
    let again = Mount::over(&source, with_disk(cache.path(), 1 << 30));
    let new = std::fs::read(again.path(SMALL)).unwrap();
    assert_eq!(again.conversions(), 1);
    assert_ne!(new, old);
    assert_eq!(new, expected(&source, SMALL));
    assert_eq!(inspect(&again.path(SMALL)), ("webp".into(), 200, 133));
}

#[test]
fn the_bound_holds_under_a_stream_of_variants_larger_than_it() {
    let cache = tempfile::tempdir().unwrap();
    let bound = 4 << 20;
    let options = MountOptions {
        cache_bytes: 1 << 20,
        ..with_disk(cache.path(), bound)
    };
    let m = Mount::with(options, Default::default(), Styles::default(), photo);
    let mut written = 0;
    for width in (400..1000).step_by(40) {
        let name = format!("a.jpg@resize,w_{width}@format,png");
        let bytes = std::fs::read(m.path(&name)).unwrap();
        written += bytes.len() as u64;
        let held: u64 = entries(cache.path())
            .iter()
            .filter_map(|p| p.metadata().ok()) // evicted meanwhile
            .map(|m| m.len())
            .sum();
        assert!(held <= bound, "{held} bytes on disk, bound {bound}");
    }
    assert!(
        written > 2 * bound,
        "the stream ({written}) must exceed the bound"
    );
    m.settle();
    let disk = m.disk().unwrap();
    assert!(disk.bytes() <= bound);
    assert!(disk.stats.evictions.load(Ordering::Relaxed) > 0);
    // The most recent one is still there.
    let again = Mount::over(&m.source, with_disk(cache.path(), bound));
    std::fs::read(again.path("a.jpg@resize,w_960@format,png")).unwrap();
    assert_eq!(again.conversions(), 0);
}

/// What `dir` and everything under it take on disk (its blocks, as `du` counts them).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = std::fs::symlink_metadata(dir).map_or(0, |m| m.blocks() * 512);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            allocated(&path)
        } else {
            // Evicted meanwhile: nothing.
            std::fs::symlink_metadata(&path).map_or(0, |m| m.blocks() * 512)
        };
    }
    total
}

/// Third hostile review of 2026-12-03: entries were counted by their length alone, so a
/// stream of tiny variants, each with a block for its header and spread over 256
/// subdirectories, took 2.25 times the bound on disk.
#[test]
fn the_bound_holds_on_disk_for_a_stream_of_tiny_variants() {
    let cache = tempfile::tempdir().unwrap();
    let bound = 2 << 20;
    let tiny = |source: &Path| {
        image::RgbImage::from_pixel(8, 8, image::Rgb([10, 200, 30]))
            .save(source.join("t.png"))
            .unwrap()
    };
    let m = Mount::with(
        with_disk(cache.path(), bound),
        Default::default(),
        Styles::default(),
        tiny,
    );
    // Counted by length alone, 600 pass the bound too.
    for width in 1..=600 {
        std::fs::read(m.path(&format!("t.png@resize,w_{width}"))).unwrap();
    }
    m.settle();
    let disk = m.disk().unwrap();
    assert!(
        disk.stats.evictions.load(Ordering::Relaxed) > 0,
        "the stream must pass the bound"
    );
    let on_disk = allocated(cache.path());
    assert!(on_disk <= bound, "{on_disk} bytes on disk, bound {bound}");
}

#[test]
fn damaged_truncated_and_foreign_entries_are_converted_again_never_served() {
    let dir = tempfile::tempdir().unwrap();
    photo(dir.path());
    let fresh = |name: &str| {
        let out = dir.path().join("fresh");
        let (file, spec) = name.split_once('@').unwrap();
        common::run(
            bin().to_str().unwrap(),
            &[
                "convert",
                dir.path().join(file).to_str().unwrap(),
                spec,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        std::fs::read(out).unwrap()
    };
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("a flipped byte", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x55;
            let mut file = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            std::io::Write::write_all(&mut file, &bytes).unwrap();
        }),
        ("truncated", |p| {
            let file = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            file.set_len(file.metadata().unwrap().len() / 2).unwrap();
        }),
        ("a foreign file", |p| {
            std::fs::remove_file(p).unwrap();
            std::fs::write(p, b"\x89PNG\r\n\x1a\n not ours").unwrap();
        }),
    ];
    for (what, damage) in damages {
        for name in [SMALL, LARGE] {
            let cache = tempfile::tempdir().unwrap();
            let first = Mount::over(dir.path(), with_disk(cache.path(), 1 << 30));
            first.read_all(name);
            first.settle();
            drop(first);
            let files = entries(cache.path());
            assert_eq!(files.len(), 1);
            damage(&files[0]);
            let m = Mount::over(dir.path(), with_disk(cache.path(), 1 << 30));
            let served = m.read_all(name);
            assert_eq!(served, fresh(name), "{what}, {name}: wrong bytes served");
            assert_eq!(m.conversions(), 1, "{what}, {name}");
            let disk = m.disk().unwrap();
            assert_eq!(
                disk.stats.corrupt.load(Ordering::Relaxed),
                1,
                "{what}, {name}"
            );
            assert!(image::load_from_memory(&served).is_ok(), "{what}, {name}");
        }
    }
}

impl Mount {
    fn read_all(&self, name: &str) -> Vec<u8> {
        let bytes = std::fs::read(self.path(name)).unwrap();
        assert_eq!(
            std::fs::metadata(self.path(name)).unwrap().len(),
            bytes.len() as u64
        );
        bytes
    }

    /// Waits until every conversion so far is written to disk (or failed to be): the
    /// write follows the answer, on the converter's thread.
    fn settle(&self) -> &Mount {
        let disk = self.disk().unwrap();
        let start = Instant::now();
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::SeqCst);
        while count(&disk.stats.writes) + count(&disk.stats.write_errors) < self.conversions() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "disk writes never ended"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self
    }
}

/// `imgfs mount` as a process with its stderr in a file.
fn spawn_mount(source: &Path, mnt: &Path, cache: &Path, log: &Path) -> Child {
    let child = Command::new(bin())
        .args(["mount", "--jobs", "2", "--disk-cache"])
        .args([cache, source, mnt])
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !is_mounted(mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "no mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn conversions_logged(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines().filter(|l| l.contains(" converted ")).count()
}

fn end(mut child: Child, mnt: &Path) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = Command::new("umount").arg("-l").arg(mnt).status();
}

#[test]
fn sigkill_mid_conversion_loses_nothing_but_the_conversion() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mnt, cache) = (
        dir.path().join("src"),
        dir.path().join("mnt"),
        dir.path().join("cache"),
    );
    std::fs::create_dir_all(&source).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    photo(&source);
    make_jpeg(&source.join("big.jpg"), 4000, 3000);
    let slow = "big.jpg@format,heic";
    let log = dir.path().join("first.log");
    let mut child = spawn_mount(&source, &mnt, &cache, &log);
    let done = std::fs::read(mnt.join(SMALL)).unwrap();
    let reader = {
        let path = mnt.join(slow);
        std::thread::spawn(move || std::fs::read(path))
    };
    std::thread::sleep(Duration::from_millis(700)); // the HEIC encode takes seconds
    child.kill().unwrap();
    child.wait().unwrap();
    // Usually cut off (ENOTCONN); if the conversion was faster, the remount shows either way.
    let _ = reader.join().unwrap();
    let _ = Command::new("umount").arg("-l").arg(&mnt).status();

    let log = dir.path().join("second.log");
    let child = spawn_mount(&source, &mnt, &cache, &log);
    assert_eq!(std::fs::read(mnt.join(SMALL)).unwrap(), done);
    assert_eq!(
        conversions_logged(&log),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let heic = std::fs::read(mnt.join(slow)).unwrap();
    assert!(conversions_logged(&log) <= 1);
    assert_eq!(heic, expected(&source, slow));
    assert!(image::load_from_memory(&std::fs::read(mnt.join(SMALL)).unwrap()).is_ok());
    end(child, &mnt);
}

#[test]
fn two_mounts_share_one_directory() {
    let cache = tempfile::tempdir().unwrap();
    let a = photo_mount(cache.path());
    let b = Mount::over(&a.source, with_disk(cache.path(), 1 << 30));
    let first = a.read_all(SMALL);
    a.settle();
    assert_eq!(b.read_all(SMALL), first);
    assert_eq!(b.conversions(), 0, "b found a's entry");
    // Both ask for the same new variants at once.
    let names: Vec<String> = (0..6)
        .map(|n| format!("a.jpg@resize,w_{}@format,png", 300 + n * 50))
        .collect();
    std::thread::scope(|scope| {
        for m in [&a, &b] {
            let names = &names;
            scope.spawn(move || names.iter().for_each(|n| drop(m.read_all(n))));
        }
    });
    for name in &names {
        assert_eq!(a.read_all(name), b.read_all(name));
        assert_eq!(a.read_all(name), expected(&a.source, name));
    }
    a.settle();
    b.settle();
    let third = Mount::over(&a.source, with_disk(cache.path(), 1 << 30));
    for name in &names {
        third.read_all(name);
    }
    assert_eq!(third.conversions(), 0);
    for m in [&a, &b, &third] {
        assert_eq!(m.disk().unwrap().stats.corrupt.load(Ordering::Relaxed), 0);
    }
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        // Mode 0700: a tmpfs root is 1777 by default, which the disk tier refuses.
        let size = format!("size={size},mode=0700");
        common::run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &size,
                "tmpfs",
                dir.path().to_str().unwrap(),
            ],
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_loses_only_the_cache() {
    let tmpfs = Tmpfs::new("1m");
    let m = Mount::with(
        with_disk(tmpfs.0.path(), 1 << 30),
        Default::default(),
        Styles::default(),
        photo,
    );
    for width in (700..1200).step_by(100) {
        let name = format!("a.jpg@resize,w_{width}@format,png");
        assert_eq!(m.read_all(&name), expected(&m.source, &name), "{name}");
    }
    let disk = m.disk().unwrap();
    assert!(
        disk.stats.write_errors.load(Ordering::Relaxed) > 0,
        "the tmpfs never filled"
    );
    let temporaries = std::fs::read_dir(tmpfs.0.path())
        .unwrap()
        .flatten()
        .filter(|d| d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(temporaries, 0, "failed writes leave no temporary file");
    drop(m);
}

/// Whoever may write the cache directory decides what every reader is served, and the source
/// tree is never written: a mount runs without such a directory, `warm` refuses it.
#[test]
fn a_cache_directory_others_may_write_or_in_the_source_is_never_used() {
    use std::os::unix::fs::PermissionsExt;
    let open_to_all = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open_to_all.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let given_away = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(given_away.path(), Some(65534), Some(65534)).unwrap();
    let source = tempfile::tempdir().unwrap();
    photo(source.path());
    let inside = source.path().join(".cache/imgfs");
    let listing = |dir: &Path| {
        let mut names = tree(dir);
        names.sort();
        names
    };
    let before = listing(source.path());
    for cache in [open_to_all.path(), given_away.path(), inside.as_path()] {
        let m = Mount::over(source.path(), with_disk(cache, 1 << 30));
        assert!(m.disk().is_none(), "{}", cache.display());
        assert_eq!(m.read_all(SMALL), expected(source.path(), SMALL));
        drop(m);
        let out = Command::new(bin())
            .arg("warm")
            .arg(source.path())
            .arg("format,webp")
            .arg("--disk-cache")
            .arg(cache)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: {text}", cache.display());
        let why = if cache == inside {
            "inside the source directory"
        } else if cache == given_away.path() {
            "owned by uid 65534"
        } else {
            "writable by group or others (mode 1777)"
        };
        assert!(text.contains(why), "{}: {text}", cache.display());
    }
    assert_eq!(listing(source.path()), before, "the source was written");
    for cache in [open_to_all.path(), given_away.path()] {
        assert_eq!(std::fs::read_dir(cache).unwrap().count(), 0);
    }
}

/// Every path under `dir`, relative.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found
}
