//! Sources that change under a reader, vanish while open, and a mount process that is told
//! to stop while it is busy. (After SIGKILL, `fusermount3 -u` and a new mount: cli.rs.)
//! Every test mounts: root and `/dev/fuse` needed.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{bin, is_mounted, make_jpeg, Mount};
use imgfs::pipeline::{self, Settings};
use imgfs::spec::{Spec, Styles};

/// Two versions of a source, of different sizes, and what `spec` makes of each.
struct Versions {
    old: Vec<u8>,
    new: Vec<u8>,
    old_out: Vec<u8>,
    new_out: Vec<u8>,
}

fn versions(dir: &Path, spec: &str) -> Versions {
    make_jpeg(&dir.join("old.jpg"), 300, 200);
    make_jpeg(&dir.join("new.jpg"), 320, 240);
    let old = fs::read(dir.join("old.jpg")).unwrap();
    let new = fs::read(dir.join("new.jpg")).unwrap();
    let spec = Spec::parse(spec, &Styles::default()).unwrap();
    let settings = Settings::default();
    let old_out = pipeline::convert(&old, &Default::default(), &spec, &settings)
        .unwrap()
        .bytes;
    let new_out = pipeline::convert(&new, &Default::default(), &spec, &settings)
        .unwrap()
        .bytes;
    assert_ne!(old_out.len(), new_out.len());
    Versions {
        old,
        new,
        old_out,
        new_out,
    }
}

/// Readers loop over `names` while `writer` changes the source; every successful read must
/// be one whole version. Returns (reads, failed reads by errno).
fn race(
    m: &Mount,
    names: &[(&str, Vec<Vec<u8>>)],
    allowed_errnos: &[i32],
    writer: impl FnMut(usize) + Send + 'static,
) -> (u64, Vec<i32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut writer = writer;
    let w = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                writer(i);
                i += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let mut readers = Vec::new();
    for t in 0..4 {
        let names: Vec<(std::path::PathBuf, String, Vec<Vec<u8>>)> = names
            .iter()
            .map(|(n, ok)| (m.path(n), n.to_string(), ok.clone()))
            .collect();
        let (stop, reads) = (stop.clone(), reads.clone());
        let allowed = allowed_errnos.to_vec();
        readers.push(std::thread::spawn(move || {
            let mut errors = Vec::new();
            let mut k = t;
            while !stop.load(Ordering::Relaxed) {
                let (path, name, ok) = &names[k % names.len()];
                k += 1;
                match fs::read(path) {
                    Ok(bytes) => {
                        assert!(
                            ok.contains(&bytes),
                            "{name}: read {} bytes that are no whole version (sizes {:?})",
                            bytes.len(),
                            ok.iter().map(Vec::len).collect::<Vec<_>>()
                        );
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let errno = e.raw_os_error().unwrap_or(-1);
                        assert!(allowed.contains(&errno), "{name}: {e}");
                        errors.push(errno);
                    }
                }
            }
            errors
        }));
    }
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let mut errors = Vec::new();
    for r in readers {
        errors.extend(r.join().unwrap());
    }
    (reads.load(Ordering::Relaxed), errors)
}

#[test]
fn a_source_replaced_by_rename_while_read_gives_whole_versions() {
    let scratch = tempfile::tempdir().unwrap();
    let v = versions(scratch.path(), "resize,w_100");
    let m = Mount::new_with_files(|src| fs::write(src.join("p.jpg"), &v.old).unwrap());
    let src = m.source.clone();
    let (old, new) = (v.old.clone(), v.new.clone());
    let (reads, errors) = race(
        &m,
        &[
            (
                "p.jpg@resize,w_100",
                vec![v.old_out.clone(), v.new_out.clone()],
            ),
            ("p.jpg", vec![v.old.clone(), v.new.clone()]),
        ],
        &[],
        move |i| {
            let tmp = src.join(".p.jpg.tmp");
            fs::write(&tmp, if i % 2 == 0 { &new } else { &old }).unwrap();
            fs::rename(&tmp, src.join("p.jpg")).unwrap();
        },
    );
    eprintln!("rename race: {reads} whole reads, errors {errors:?}");
    assert!(reads > 50, "{reads} reads");
    assert!(errors.is_empty());
}

#[test]
fn a_source_rewritten_in_place_while_read_gives_whole_versions_of_variants() {
    let scratch = tempfile::tempdir().unwrap();
    let v = versions(scratch.path(), "resize,w_100");
    let m = Mount::new_with_files(|src| fs::write(src.join("p.jpg"), &v.old).unwrap());
    let src = m.source.clone();
    let (old, new) = (v.old.clone(), v.new.clone());
    // While the writer is between truncate and write the source IS empty or partial: a
    // conversion of that state fails (EIO); a success must be a whole version's conversion.
    let (reads, errors) = race(
        &m,
        &[(
            "p.jpg@resize,w_100",
            vec![v.old_out.clone(), v.new_out.clone()],
        )],
        &[libc::EIO],
        move |i| {
            fs::write(src.join("p.jpg"), if i % 2 == 0 { &new } else { &old }).unwrap();
        },
    );
    eprintln!(
        "in-place race: {reads} whole reads, {} reads failed with EIO (source empty or partial)",
        errors.len()
    );
    assert!(reads > 50, "{reads} reads");
    // And once the writer stops, the variant is the last version's conversion.
    std::thread::sleep(Duration::from_millis(1100));
    let last = fs::read(m.source.join("p.jpg")).unwrap();
    let expected = if last == v.old {
        &v.old_out
    } else {
        &v.new_out
    };
    assert_eq!(&fs::read(m.path("p.jpg@resize,w_100")).unwrap(), expected);
}

#[test]
fn an_open_variant_keeps_its_whole_version_while_the_name_shows_the_new_one() {
    let scratch = tempfile::tempdir().unwrap();
    let v = versions(scratch.path(), "resize,w_100");
    // The open file holds the larger conversion, so a size taken from the smaller one
    // would cut its reads.
    let ((big, big_out), (small, small_out)) = if v.old_out.len() > v.new_out.len() {
        ((&v.old, &v.old_out), (&v.new, &v.new_out))
    } else {
        ((&v.new, &v.new_out), (&v.old, &v.old_out))
    };
    let m = Mount::new_with_files(|src| fs::write(src.join("p.jpg"), big).unwrap());
    let name = "p.jpg@resize,w_100";
    let mut file = fs::File::open(m.path(name)).unwrap();
    let mut bytes = vec![0u8; 100];
    file.read_exact(&mut bytes).unwrap();
    let before = fs::metadata(m.path(name)).unwrap();
    let tmp = m.source.join(".p.jpg.tmp");
    fs::write(&tmp, small).unwrap();
    fs::rename(&tmp, m.source.join("p.jpg")).unwrap();
    // The name shows the new version once the kernel asks again (at most one timeout).
    let start = Instant::now();
    let after = loop {
        let meta = fs::metadata(m.path(name)).unwrap();
        if meta.len() == small_out.len() as u64 {
            break meta;
        }
        assert_eq!(
            meta.len(),
            big_out.len() as u64,
            "a size of neither version"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new size never showed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(before.ino(), after.ino(), "one inode for two versions");
    // The open file is still its own version: its size, and every byte of it.
    assert_eq!(file.metadata().unwrap().len(), big_out.len() as u64);
    file.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len(), big_out.len());
    assert!(&bytes == big_out, "the open file's bytes changed");
    assert_eq!(&fs::read(m.path(name)).unwrap(), small_out);
}

#[test]
fn opening_an_outdated_entry_whose_bytes_were_evicted_gets_the_new_version() {
    let scratch = tempfile::tempdir().unwrap();
    let v = versions(scratch.path(), "resize,w_100");
    // A cache that keeps nothing: the old version is gone as soon as it is served.
    let options = imgfs::options::MountOptions {
        cache_bytes: 1,
        ..Default::default()
    };
    let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
        fs::write(src.join("p.jpg"), &v.old).unwrap()
    });
    let name = "p.jpg@resize,w_100";
    assert_eq!(fs::read(m.path(name)).unwrap(), v.old_out);
    fs::write(m.source.join("p.jpg"), &v.new).unwrap();
    // The kernel still holds the old entry: the open of it is refused with ESTALE, which
    // the kernel answers by looking the name up again.
    assert_eq!(fs::read(m.path(name)).unwrap(), v.new_out);
}

#[test]
fn a_source_deleted_while_its_variant_is_open_still_reads_completely() {
    let m = Mount::new_with_files(|src| make_jpeg(&src.join("p.jpg"), 300, 200));
    let name = "p.jpg@resize,w_120@format,png";
    let expected = fs::read(m.path(name)).unwrap();
    // A fresh name too, converted by the open itself.
    let mut fresh = fs::File::open(m.path("p.jpg@resize,w_90")).unwrap();
    let mut file = fs::File::open(m.path(name)).unwrap();
    let mut head = vec![0u8; 100];
    file.read_exact(&mut head).unwrap();
    fs::remove_file(m.source.join("p.jpg")).unwrap();
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert_eq!(head, expected);
    let mut bytes = Vec::new();
    fresh.read_to_end(&mut bytes).unwrap();
    assert!(bytes.len() > 100 && bytes.starts_with(&[0xFF, 0xD8]));
    // Once the kernel's entries expire, the name is gone.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        crate::common::errno_of(fs::metadata(m.path(name))),
        libc::ENOENT
    );
    assert_eq!(
        crate::common::errno_of(fs::metadata(m.path("p.jpg@resize,w_91"))),
        libc::ENOENT
    );
}

#[test]
fn sigterm_under_load_exits_zero_and_leaves_no_mount() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir_all(&source).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    for n in 0..3 {
        make_jpeg(&source.join(format!("p{n}.jpg")), 800, 600);
    }
    let mut child = Command::new(bin())
        .args(["mount", source.to_str().unwrap(), mnt.to_str().unwrap()])
        .arg("--no-disk-cache")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !is_mounted(&mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "no mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for t in 0..6u32 {
        let (stop, reads, mnt) = (stop.clone(), reads.clone(), mnt.clone());
        readers.push(std::thread::spawn(move || {
            let mut w = 100 + t;
            while !stop.load(Ordering::Relaxed) {
                w += 6;
                let name = match w % 3 {
                    0 => format!("p{}.jpg", t % 3),
                    1 => format!("p{}.jpg@resize,w_{}", t % 3, 100 + w % 300),
                    _ => format!("p{}.jpg@resize,w_{}@format,webp", t % 3, 100 + w % 300),
                };
                // Once unmounted, reads fail (or see the empty mountpoint): that is fine.
                if fs::read(mnt.join(name)).is_ok() {
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Keep a variant open across the signal, too.
    std::thread::sleep(Duration::from_millis(800));
    let held = fs::File::open(mnt.join("p0.jpg@resize,w_77")).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let before = reads.load(Ordering::Relaxed);
    assert!(before > 0, "no reads succeeded before the signal");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the mount did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    drop(held);
    assert!(status.success(), "exit {status:?}");
    assert!(!is_mounted(&mnt), "mount left behind");
    eprintln!("SIGTERM after {before} reads; exited in {:?}", t.elapsed());
}
