//! Many users on one mount (`-o allow_other`, run by root): each request is judged as its
//! caller, and no user can take more than their share of what the mount holds for all of
//! them (listings, open variants, descriptors, conversion turns). The unprivileged user is
//! `nobody` through `setpriv`. Needs root and /dev/fuse.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{b64, errno_of, inspect, make_jpeg, mounted_by, run, Mount};
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

/// A mount others may use (`allow_other`, the source's parent open to all), filled by `fill`.
fn shared_mount(mut options: MountOptions, fill: impl FnOnce(&Path)) -> Mount {
    options.options.push("allow_other".into());
    Mount::with(options, Settings::default(), Styles::default(), |src| {
        fs::set_permissions(src.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
        fill(src)
    })
}

fn as_nobody(path: &Path) -> std::process::Output {
    as_uid(65534, path)
}

/// nobody reads `name`, and the same bytes as root.
fn assert_nobody_reads_what_root_reads(m: &Mount, name: &str) {
    let out = as_nobody(&m.path(name));
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, fs::read(m.path(name)).unwrap(), "{name}");
}

/// Root reads `name` first, so the kernel's entries and imgfs's caches hold it (a cached
/// variant is what nobody would get); nobody's read is then EACCES.
fn assert_denied_to_nobody(m: &Mount, name: &str) {
    assert!(!fs::read(m.path(name)).unwrap().is_empty(), "{name}");
    let out = as_nobody(&m.path(name));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "{name} readable by nobody"
    );
    assert!(stderr.contains("Permission denied"), "{name}: {stderr}");
}

/// `cat path` as user and group `uid`.
fn as_uid(uid: u32, path: &Path) -> std::process::Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "cat",
        ])
        .arg(path)
        .output()
        .unwrap()
}

/// Each open directory holds its listing: past `--listing-memory` together, or half of it
/// for one user, opendir is ENOMEM (not a mount grown by the size of a huge directory times
/// its openers), and a closed one gives its share back.
#[test]
fn directory_listings_held_open_are_bounded() {
    let options = MountOptions {
        // A listing of `big` (400 entries of ~104 bytes) fits one user's half, two do not.
        listing_bytes: 96 << 10,
        options: vec!["allow_other".into()],
        ..MountOptions::default()
    };
    let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
        fs::set_permissions(src.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(src.join("big")).unwrap();
        for i in 0..400 {
            fs::write(src.join(format!("big/{i:036}.txt")), b"").unwrap();
        }
    });
    let big = m.mnt.join("big");
    let first = fs::read_dir(&big).unwrap();
    assert_eq!(errno_of(fs::read_dir(&big)), libc::ENOMEM);
    // Second hostile review of 2026-12-03: one user could take the whole bound.
    let listed = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ls",
            "-1",
        ])
        .arg(&big)
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(listed.stdout.iter().filter(|&&b| b == b'\n').count(), 400);
    assert_eq!(
        fs::read_dir(&m.mnt).unwrap().count(),
        1,
        "a small one lists"
    );
    drop(first);
    // The kernel sends RELEASEDIR after close(2) returns.
    let started = Instant::now();
    let listed = loop {
        match fs::read_dir(&big) {
            Ok(entries) => break entries.count(),
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(err) => panic!("still refused: {err}"),
        }
    };
    assert_eq!(listed, 400);
}

#[test]
fn with_allow_other_unreadable_sources_have_unreadable_variants() {
    let m = shared_mount(
        MountOptions {
            ..MountOptions::default()
        },
        |src| {
            make_jpeg(&src.join("private.jpg"), 40, 30);
            make_jpeg(&src.join("public.jpg"), 40, 30);
            fs::set_permissions(src.join("private.jpg"), fs::Permissions::from_mode(0o600))
                .unwrap();
            fs::set_permissions(src.join("public.jpg"), fs::Permissions::from_mode(0o644)).unwrap();
            fs::create_dir(src.join("closed")).unwrap();
            make_jpeg(&src.join("closed/in.jpg"), 40, 30);
            fs::set_permissions(src.join("closed"), fs::Permissions::from_mode(0o700)).unwrap();
        },
    );
    for name in [
        "public.jpg",
        "public.jpg@format,png",
        "public.jpg@resize,w_10",
    ] {
        assert_nobody_reads_what_root_reads(&m, name);
    }
    for name in [
        "private.jpg",
        "private.jpg@format,png",
        "private.jpg@resize,w_10",
        "private.jpg@info",
        "closed/in.jpg",
        "closed/in.jpg@format,png",
    ] {
        assert_denied_to_nobody(&m, name);
    }
    let private = fs::metadata(m.path("private.jpg@format,png")).unwrap();
    assert_eq!(private.permissions().mode() & 0o777, 0o400);
}

/// `setfacl` on the source as the caller's shell would: the test fails if the file system
/// under the test's directory keeps no ACLs.
fn setfacl(entry: &str, path: &Path) {
    run("setfacl", &["-m", entry, path.to_str().unwrap()]);
}

/// Fourth hostile review of 2026-12-03: an entry `user:nobody:---` in a file's POSIX ACL
/// was ignored (only the mode bits counted), so nobody read the file, and its variants,
/// through the mount. Now the kernel judges each file's ACL as the source shows it, and
/// imgfs judges the inputs it reads itself (a watermark image) the same way; an ACL that
/// grants more than the mode grants through the mount too.
#[test]
fn posix_acls_of_the_source_hold_through_the_mount() {
    let m = shared_mount(MountOptions::default(), |src| {
        for name in ["denied.jpg", "granted.jpg", "public.jpg", "closed/in.jpg"] {
            fs::create_dir_all(src.join(name).parent().unwrap()).unwrap();
            make_jpeg(&src.join(name), 40, 30);
        }
        setfacl("u:65534:---", &src.join("denied.jpg"));
        fs::set_permissions(src.join("granted.jpg"), fs::Permissions::from_mode(0o640)).unwrap();
        setfacl("u:65534:r", &src.join("granted.jpg"));
        setfacl("u:65534:---", &src.join("closed"));
    });
    let stamped = format!("public.jpg@watermark,image_{}", b64("denied.jpg"));
    let denied = [
        "denied.jpg",
        "denied.jpg@format,png",
        "denied.jpg@resize,w_10",
        "closed/in.jpg",
        "closed/in.jpg@format,png",
        &stamped,
    ];
    for name in denied {
        assert_denied_to_nobody(&m, name);
        // The ACL names nobody alone: another user still reads it.
        let other = as_uid(1000, &m.path(name));
        assert!(
            other.status.success(),
            "{name} as 1000: {}",
            String::from_utf8_lossy(&other.stderr)
        );
    }
    for name in ["granted.jpg", "granted.jpg@format,png", "public.jpg"] {
        assert_nobody_reads_what_root_reads(&m, name);
        assert!(!as_uid(1000, &m.path(name)).status.success() || name == "public.jpg");
    }
    // getfacl reads the ACL the mount shows: a variant's is its source's, cut to read.
    let variant = m.path("granted.jpg@format,png");
    let shown = run("getfacl", &["-c", "-n", variant.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&shown);
    assert!(shown.contains("user:65534:r--"), "{shown}");
    assert!(shown.contains("user::r--"), "{shown}");
}

/// Fourth hostile review of 2026-12-03 (found while checking ACLs in views): a whole-tree
/// view's image read its recipe from the image's own path as if it were its directory's
/// (`@style,s/a.webp` made from `a.webp/a.jpg`), so the source's ACL asked for by the
/// kernel for any user but the owner was ENOENT, and other users could not read views.
/// Another user reads a view's images as root does; a directory whose ACL shuts nobody
/// out is shut in the view too.
#[test]
fn other_users_read_whole_tree_views_as_the_source_allows() {
    let mut styles = Styles::default();
    styles.add("s", "resize,w_16@format,webp").unwrap();
    let options = MountOptions {
        options: vec!["allow_other".into()],
        ..MountOptions::default()
    };
    let m = Mount::with(options, Settings::default(), styles, |src| {
        fs::set_permissions(src.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["a.jpg", "sub/b.jpg", "closed/c.jpg"] {
            fs::create_dir_all(src.join(name).parent().unwrap()).unwrap();
            make_jpeg(&src.join(name), 40, 30);
        }
        setfacl("u:65534:---", &src.join("closed"));
    });
    for name in ["@style,s/a.webp", "@style,s/sub/b.webp"] {
        assert_nobody_reads_what_root_reads(&m, name);
        assert_eq!(inspect(&m.path(name)).0, "webp", "{name}");
    }
    assert!(!fs::read(m.path("@style,s/closed/c.webp"))
        .unwrap()
        .is_empty());
    let out = as_nobody(&m.path("@style,s/closed/c.webp"));
    assert!(!out.status.success() && out.stdout.is_empty());
}

/// Second hostile review of 2026-12-03: a name was looked up by its directory's path, so a
/// directory swapped in (one nobody may search) answered through the cached rights of the
/// one the kernel had judged. Attributes are kept a minute, so the kernel judges the old
/// directory when nobody asks again; imgfs sees the swap and the kernel walks again.
#[test]
fn a_directory_swapped_in_cannot_be_searched_through_the_old_ones_rights() {
    let m = shared_mount(
        MountOptions {
            attr_ttl: Duration::from_secs(60),
            ..MountOptions::default()
        },
        |src| {
            for d in ["team/open", "team/closed"] {
                fs::create_dir_all(src.join(d)).unwrap();
            }
            fs::write(src.join("team/open/names"), b"public\n").unwrap();
            fs::write(src.join("team/closed/payroll"), b"secret\n").unwrap();
            make_jpeg(&src.join("team/closed/photo.jpg"), 40, 30);
            fs::set_permissions(src.join("team/closed"), fs::Permissions::from_mode(0o700))
                .unwrap();
        },
    );
    let out = as_nobody(&m.path("team/open/names"));
    assert_eq!(
        out.stdout,
        b"public\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(m.source.join("team/open"), m.source.join("team/was-open")).unwrap();
    fs::rename(m.source.join("team/closed"), m.source.join("team/open")).unwrap();
    // Names the kernel has not looked up in `open` yet: it asks imgfs.
    for name in ["team/open/payroll", "team/open/photo.jpg@format,png"] {
        let out = as_nobody(&m.path(name));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.stdout.is_empty() && !out.status.success(),
            "{name} read by nobody"
        );
        assert!(stderr.contains("Permission denied"), "{name}: {stderr}");
    }
}

/// Second hostile review of 2026-12-03: an open variant keeps its bytes after the cache
/// evicted them, and nothing bounded how many anyone held open. Past `--open-memory`
/// (half of it per user) open(2) is ENOMEM, and the mount goes on.
#[test]
fn variants_held_open_are_bounded() {
    let m = Mount::with(
        MountOptions {
            // A 40 × 30 BMP is 3,654 bytes: one fits a user's half, two do not.
            open_bytes: 10_000,
            ..MountOptions::default()
        },
        Settings::default(),
        Styles::default(),
        |src| {
            make_jpeg(&src.join("a.jpg"), 40, 30);
            make_jpeg(&src.join("b.jpg"), 40, 30);
        },
    );
    let held = fs::File::open(m.path("a.jpg@format,bmp")).unwrap();
    let refused = fs::File::open(m.path("b.jpg@format,bmp"));
    assert_eq!(errno_of(refused), libc::ENOMEM);
    // The same variant again costs nothing more; originals pin nothing.
    assert_eq!(fs::read(m.path("a.jpg@format,bmp")).unwrap().len(), 3654);
    assert!(!fs::read(m.path("b.jpg")).unwrap().is_empty());
    drop(held);
    // The kernel sends RELEASE after close(2) returns: wait for it to arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    let bmp = loop {
        match fs::read(m.path("b.jpg@format,bmp")) {
            Ok(bytes) => break bytes,
            Err(err) if Instant::now() < deadline => {
                assert_eq!(err.raw_os_error(), Some(libc::ENOMEM));
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("still refused after the close: {err}"),
        }
    };
    let copy = m.source.parent().unwrap().join("b.bmp");
    fs::write(&copy, &bmp).unwrap();
    assert_eq!(inspect(&copy), ("bmp".to_string(), 40, 30));
}

/// The binary mounted by root with `allow_other` under a descriptor limit of 200 (so 150
/// handles, 75 a user), over a source holding `a.txt` and what `fill` adds.
fn mount_with_200_descriptors(
    fill: impl FnOnce(&Path),
) -> (tempfile::TempDir, std::path::PathBuf, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (src, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    fs::write(src.join("a.txt"), b"a\n").unwrap();
    fill(&src);
    let mut limited = Command::new("prlimit");
    limited.arg("--nofile=200:200").arg(crate::common::bin());
    let child = mounted_by(limited, &src, &mnt, &["-o", "allow_other"]);
    (dir, mnt, child)
}

/// Second hostile review of 2026-12-03: every open file or directory holds one of the
/// mount's descriptors, and one user could hold them all, so the mount could then open
/// nothing for anyone. With a descriptor limit of 200, the mount keeps 150 handles, 75 a
/// user: the 76th open of one user is ENFILE, another user still opens, and a close frees.
#[test]
fn open_files_are_bounded_per_user() {
    let (_dir, mnt, mut child) = mount_with_200_descriptors(|_| {});
    let file = mnt.join("a.txt");
    let held: Vec<fs::File> = (0..75).map(|_| fs::File::open(&file).unwrap()).collect();
    let refused = errno_of(fs::File::open(&file));
    let other = as_nobody(&file);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        match fs::read(&file) {
            Err(err) if Instant::now() < deadline && err.raw_os_error() == Some(libc::ENFILE) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            read => break read,
        }
    };
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = child.wait();
    assert_eq!(refused, libc::ENFILE);
    assert_eq!(
        other.stdout,
        b"a\n",
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    assert_eq!(reopened.unwrap(), b"a\n");
}

/// Fourth hostile review of 2026-12-03: a variant's inputs (its source and watermark
/// images) stay open until its conversion ends, and conversions queued by one user held
/// descriptors without limit, until the mount could open nothing for anyone. They are
/// counted with open handles now: with a descriptor limit of 200 (75 a user) and 74 files
/// held open, a variant of one input (75) is looked up, one with a watermark (76) is
/// ENFILE, another user looks it up, and closing the files lets it through.
#[test]
fn inputs_waiting_for_conversion_count_with_open_files() {
    let (_dir, mnt, mut child) = mount_with_200_descriptors(|src| {
        make_jpeg(&src.join("a.jpg"), 40, 30);
        make_jpeg(&src.join("m.jpg"), 8, 8);
    });
    let held: Vec<fs::File> = (0..74)
        .map(|_| fs::File::open(mnt.join("a.txt")).unwrap())
        .collect();
    let plain = fs::metadata(mnt.join("a.jpg@format,png")).map(|m| m.len());
    let marked = mnt.join(format!("a.jpg@watermark,image_{}@format,png", b64("m.jpg")));
    let refused = errno_of(fs::metadata(&marked));
    let other = as_nobody(&marked);
    drop(held);
    let after = fs::read(&marked);
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = child.wait();
    assert!(plain.unwrap() > 0);
    assert_eq!(refused, libc::ENFILE);
    assert!(
        other.status.success() && !other.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    assert_eq!(after.unwrap(), other.stdout);
}

/// Second hostile review of 2026-12-03: conversions were started first come first served,
/// so one user who asked for many made everyone else wait for all of them. Users are served
/// in turn: with one job, nobody's conversion asked after root's twenty is done long before
/// root's are.
#[test]
fn one_users_many_conversions_do_not_hold_up_another_users_one() {
    const ROOTS: usize = 20;
    let m = shared_mount(
        MountOptions {
            jobs: 1,
            disk_cache: None,
            ..MountOptions::default()
        },
        |src| {
            // Each in its own directory: the kernel may serialise lookups in one.
            for i in 0..=ROOTS {
                fs::create_dir(src.join(format!("d{i}"))).unwrap();
                make_jpeg(&src.join(format!("d{i}/p.jpg")), 800, 600);
            }
        },
    );
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for i in 0..ROOTS {
            let (m, done) = (&m, &done);
            scope.spawn(move || {
                let name = format!("d{i}/p.jpg@resize,w_300@format,webp");
                fs::read(m.path(&name)).unwrap();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        while m.conversions() < ROOTS as u64 {
            std::thread::yield_now();
        }
        let theirs = as_nobody(&m.path(&format!("d{ROOTS}/p.jpg@resize,w_300@format,webp")));
        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert!(
            finished <= ROOTS / 2,
            "nobody's conversion waited for {finished} of root's {ROOTS}"
        );
    });
}

/// Unmounts (lazily) what a test mounted by hand, however the test ends.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Third hostile review of 2026-12-03: on a file system that keeps no birth time (here ext4
/// made with 128-byte inodes, as mkfs does below 512 MB; NFSv3 is another), a variant's key
/// was (device, inode, size, mtime), all of which the owner of a new file on a freed inode
/// number sets: another user's deleted private image was served for it.
#[test]
fn without_birth_times_a_new_file_on_a_freed_inode_is_not_served_the_old_files_variants() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (image, src) = (dir.path().join("no-btime.ext4"), dir.path().join("src"));
    fs::create_dir(&src).unwrap();
    fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
    let image_arg = image.to_str().unwrap();
    crate::common::run("mkfs.ext4", &["-q", "-I", "128", "-F", image_arg]);
    crate::common::run("mount", &["-o", "loop", image_arg, src.to_str().unwrap()]);
    let _unmount = Unmount(src.clone());
    let shared = src.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let secret = shared.join("secret.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([255, 0, 0]))
        .save(&secret)
        .unwrap();
    std::os::unix::fs::chown(&secret, Some(1001), Some(1001)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let victim = fs::metadata(&secret).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        victim.created().is_err(),
        "this file system was to keep no birth time"
    );
    let options = MountOptions {
        options: vec!["allow_other".into()],
        ..MountOptions::default()
    };
    let m = Mount::over(&src, options);
    let as_user = |uid: u32, path: &Path| {
        let out = as_uid(uid, path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let seen = as_user(1001, &m.path("shared/secret.png@format,bmp"));
    let first_pixel = |bmp: &[u8]| {
        *image::load_from_memory(bmp)
            .unwrap()
            .to_rgb8()
            .get_pixel(0, 0)
    };
    assert_eq!(first_pixel(&seen), image::Rgb([255, 0, 0]));
    // Whole seconds here: the new file's status change must fall in a later one, as it does
    // for a file made after another user's file was deleted.
    std::thread::sleep(Duration::from_millis(1100));
    fs::remove_file(&secret).unwrap();
    let mine = shared.join("mine.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([0, 0, 255]))
        .save(&mine)
        .unwrap();
    let file = fs::File::options().write(true).open(&mine).unwrap();
    file.set_len(victim.len()).unwrap();
    file.set_modified(victim.modified().unwrap()).unwrap();
    drop(file);
    std::os::unix::fs::chown(&mine, Some(65534), Some(65534)).unwrap();
    let forged = fs::metadata(&mine).unwrap();
    assert_eq!(
        (
            forged.ino(),
            forged.len(),
            forged.mtime(),
            forged.mtime_nsec()
        ),
        (
            victim.ino(),
            victim.len(),
            victim.mtime(),
            victim.mtime_nsec()
        ),
        "the new file was to pass for the old one by inode, size and mtime"
    );
    let served = as_user(65534, &m.path("shared/mine.png@format,bmp"));
    assert_eq!(
        first_pixel(&served),
        image::Rgb([0, 0, 255]),
        "the deleted private image was served for the new file"
    );
    drop(m);
}
