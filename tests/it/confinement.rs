//! The root and the caller's permissions through the kernel, as a hostile user tries them:
//! a root mount with `-o allow_other`, requests from an unprivileged uid (`setpriv`), files
//! written into the source tree while mounted. Needs root and /dev/fuse.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{self, b64, errno_at, errno_of, inspect, make_jpeg, run, Mount, Watch, MAGICK};
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;
use libc::{EINVAL, ENOENT};

fn png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

fn mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn allow_other(attr_ttl: Duration, fill: impl FnOnce(&Path)) -> Mount {
    Mount::with(
        MountOptions {
            options: vec!["allow_other".into()],
            attr_ttl,
            jobs: 2,
            ..MountOptions::default()
        },
        Settings::default(),
        Styles::default(),
        |src| {
            // The temporary directory above the source must be traversable by nobody.
            mode(src.parent().unwrap(), 0o755);
            fill(src)
        },
    )
}

/// `cat PATH` as uid/gid 65534 with no supplementary groups.
fn cat_as_nobody(path: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .unwrap()
}

fn stamped(path: &str) -> String {
    format!(
        "base.png@watermark,image_{},g_nw,x_0,y_0@format,png",
        b64(path)
    )
}

#[test]
fn nobody_cannot_read_a_secret_through_a_watermark_or_a_link() {
    let m = allow_other(Duration::from_secs(1), |src| {
        png(&src.join("base.png"), 16, 16, [255, 255, 255]);
        fs::create_dir(src.join("open")).unwrap();
        fs::create_dir(src.join("closed")).unwrap();
        fs::create_dir(src.join("private")).unwrap();
        png(&src.join("open/secret.png"), 8, 8, [10, 20, 30]);
        png(&src.join("open/public.png"), 8, 8, [0, 0, 0]);
        png(&src.join("closed/secret.png"), 8, 8, [10, 20, 30]);
        fs::write(src.join("closed/notes.png"), b"not an image").unwrap();
        png(&src.join("private/secret.png"), 8, 8, [10, 20, 30]);
        symlink("private/secret.png", src.join("link.png")).unwrap();
        mode(&src.join("open/secret.png"), 0o600);
        mode(&src.join("closed"), 0o700);
        mode(&src.join("private"), 0o700);
    });
    // The kernel refuses nobody the originals; the variants must follow.
    for original in ["open/secret.png", "link.png", "private/secret.png"] {
        assert!(
            !cat_as_nobody(&m.path(original)).status.success(),
            "{original}"
        );
    }
    for (name, exists) in [
        (stamped("open/secret.png"), true),
        (stamped("closed/secret.png"), true),
        // In a directory nobody may not search, what exists must not show.
        (stamped("closed/notes.png"), false),
        (stamped("closed/nothing.png"), false),
        ("link.png@format,png".into(), true),
        ("link.png@resize,w_4".into(), true),
    ] {
        // Root reads it first: a cached result must not be handed to nobody.
        assert_eq!(fs::read(m.path(&name)).is_ok(), exists, "{name} as root");
        let out = cat_as_nobody(&m.path(&name));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{name}: nobody read {} bytes",
            out.stdout.len()
        );
        assert!(stderr.contains("Permission denied"), "{name}: {stderr}");
    }
    // What nobody may read, nobody gets, with the same bytes as root.
    for name in [stamped("open/public.png"), "base.png@format,webp".into()] {
        let out = cat_as_nobody(&m.path(&name));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, fs::read(m.path(&name)).unwrap(), "{name}");
    }
}

#[test]
fn a_directory_swapped_for_a_link_out_of_the_root_is_not_followed() {
    // Within the attribute timeout the kernel keeps `d` and asks imgfs for `d/NAME` by
    // the inode it holds.
    let m = allow_other(Duration::from_secs(60), |src| {
        fs::create_dir(src.join("d")).unwrap();
        png(&src.join("d/a.png"), 8, 8, [0, 0, 255]);
        let outside = src.parent().unwrap().join("outside");
        fs::create_dir(&outside).unwrap();
        png(&outside.join("secret.png"), 8, 8, [255, 0, 0]);
    });
    assert_eq!(fs::read_dir(m.path("d")).unwrap().count(), 1);
    // Held open, `d`'s entry stays in the kernel even if memory is reclaimed meanwhile (another
    // test drops the caches): the kernel must keep asking imgfs by `d`'s inode.
    let _held = fs::File::open(m.path("d")).unwrap();
    assert!(fs::read(m.path("d/a.png@format,png")).is_ok());
    let outside = m.source.parent().unwrap().join("outside");
    fs::rename(
        m.source.join("d"),
        m.source.parent().unwrap().join("d-moved"),
    )
    .unwrap();
    symlink(&outside, m.source.join("d")).unwrap();
    // imgfs answers a name in the old `d` with ESTALE, and the kernel walks the path again:
    // `d` is now the link itself, which the kernel follows as any absolute link (outside the
    // mount, with the caller's own rights, as with a fresh mount). imgfs converts nothing
    // out there: no `@` name exists in the real directory.
    for name in ["d/secret.png@format,png", "d/secret.png@resize,w_4"] {
        let got = errno_of(fs::read(m.path(name)));
        assert_eq!(got, libc::ENOENT, "{name}");
    }
    let through_link = fs::read(m.path("d/secret.png")).unwrap();
    assert_eq!(through_link, fs::read(outside.join("secret.png")).unwrap());
}

#[test]
fn fifos_as_sources_or_watermarks_answer_at_once_and_free_every_worker() {
    let m = allow_other(Duration::from_secs(1), |src| {
        png(&src.join("base.png"), 16, 16, [255, 255, 255]);
        let fifo = src.join("pipe");
        let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        symlink("pipe", src.join("to-pipe")).unwrap();
    });
    // More requests than workers (2): had any wedged, the last would wait forever.
    let started = Instant::now();
    for name in [
        stamped("pipe"),
        stamped("to-pipe"),
        "pipe@format,png".to_string(),
        "to-pipe@format,png".to_string(),
        stamped("pipe").replace("format,png", "format,jpg"),
    ] {
        let out = Command::new("timeout")
            .args(["20", "stat"])
            .arg(m.path(&name))
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(124), "{name}: stat hung");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("No such file"), "{name}: {stderr}");
    }
    assert!(fs::read(m.path("base.png@format,webp")).is_ok());
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn names_the_kernel_forgets_leave_no_memory_behind() {
    let m = allow_other(Duration::from_secs(1), |src| {
        png(&src.join("a.png"), 4, 4, [7, 7, 7]);
    });
    let names = 3000;
    for i in 0..names {
        let name = format!("a.png@resize,w_{},h_{}", 1 + i % 100, 1 + i / 100);
        assert!(fs::metadata(m.path(&name)).is_ok(), "{name}");
    }
    assert!(m.fs.inode_count() > names / 2, "{}", m.fs.inode_count());
    // The kernel drops its dentries and inodes, and tells imgfs (FORGET).
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.fs.inode_count() > 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        m.fs.inode_count() <= 10,
        "{} inodes held",
        m.fs.inode_count()
    );
    // A name asked again is served again.
    assert!(fs::metadata(m.path("a.png@resize,w_5,h_5")).is_ok());
}

/// The mount's peak resident memory (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn hostile_watermarks_are_refused_within_the_mounts_memory_bounds() {
    // Each of these took hundreds of MB to GBs (or the mount, OOM-killed) before layers were
    // bounded and counted: CJK text at size 100/200/400 turned 45°, size 1000 on a 1×1
    // image, an 8000×8000 PNG mark.
    let dir = tempfile::tempdir().unwrap();
    let (src, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    mode(dir.path(), 0o755);
    png(&src.join("base.png"), 400, 400, [200, 200, 200]);
    png(&src.join("dot.png"), 1, 1, [0, 0, 0]);
    image::GrayImage::new(8000, 8000)
        .save(src.join("huge.png"))
        .unwrap();
    let mut child = Command::new(common::bin())
        .args(["mount", src.to_str().unwrap(), mnt.to_str().unwrap()])
        .args([
            "--cache-size",
            "64MiB",
            "--jobs",
            "2",
            "--convert-memory",
            "160MiB",
            "--no-disk-cache",
        ])
        .args(["-o", "allow_other"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !common::is_mounted(&mnt) {
        assert!(started.elapsed() < Duration::from_secs(10), "no mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    // 48 CJK characters: as many as a name of at most 255 bytes holds beside the rest.
    let text = b64(&"水".repeat(48));
    let text_mark =
        |image: &str, rest: &str| format!("{image}@watermark,text_{text}{rest}@format,png");
    for (name, expected) in [
        (text_mark("base.png", ",size_200,rotate_45"), libc::EFBIG),
        (text_mark("base.png", ",size_400,rotate_45"), libc::EFBIG),
        (text_mark("dot.png", ",size_1000"), libc::EFBIG),
        (
            format!("base.png@watermark,image_{}@format,png", b64("huge.png")),
            libc::EFBIG,
        ),
        (text_mark("base.png", ",size_100,rotate_45"), 0),
        (text_mark("base.png", ",size_40,fill_1,shadow_50"), 0),
    ] {
        // As nobody: anyone who may read one photo may send these.
        let out = cat_as_nobody(&mnt.join(&name));
        let stderr = String::from_utf8_lossy(&out.stderr);
        match expected {
            0 => assert!(out.status.success(), "{name}: {stderr}"),
            _ => assert!(stderr.contains("File too large"), "{name}: {stderr}"),
        }
    }
    let peak_mib = peak_kib(child.id()) / 1024;
    println!("peak of the mount: {peak_mib} MiB");
    // Cache + conversion budget + the process itself (fonts, code, threads).
    assert!(peak_mib < 64 + 160 + 48, "peak {peak_mib} MiB");
    assert!(
        fs::read(mnt.join("base.png@format,webp")).is_ok(),
        "the mount is up"
    );
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = child.wait();
}

#[test]
fn symlinks_out_of_the_root_are_shown_but_never_read_through() {
    let m = Mount::new_with_files(|src| {
        let outside = src.parent().unwrap().join("outside.jpg");
        make_jpeg(&outside, 40, 30);
        make_jpeg(&src.join("inside.jpg"), 40, 30);
        std::os::unix::fs::symlink(&outside, src.join("link.jpg")).unwrap();
        std::os::unix::fs::symlink("../outside.jpg", src.join("rel.jpg")).unwrap();
        std::os::unix::fs::symlink("inside.jpg", src.join("in-link.jpg")).unwrap();
        fs::create_dir(src.join("sub")).unwrap();
        std::os::unix::fs::symlink("../../outside.jpg", src.join("sub/deep.jpg")).unwrap();
        std::os::unix::fs::symlink("..", src.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("passwd.jpg")).unwrap();
    });
    let outside = m.source.parent().unwrap().join("outside.jpg");
    let mut watch = Watch::new(&outside);
    for (name, target) in [
        ("link.jpg", outside.to_str().unwrap()),
        ("rel.jpg", "../outside.jpg"),
        ("sub/deep.jpg", "../../outside.jpg"),
        ("up", ".."),
    ] {
        let meta = fs::symlink_metadata(m.path(name)).unwrap();
        assert!(meta.file_type().is_symlink(), "{name} is shown as a link");
        assert_eq!(fs::read_link(m.path(name)).unwrap(), Path::new(target));
    }
    for name in [
        "link.jpg@format,png",
        "rel.jpg@format,png",
        "sub/deep.jpg@resize,w_10",
        "link.jpg@info",
        "rel.jpg@average-hue",
        "passwd.jpg@info",
        "up@format,png",
    ] {
        assert_eq!(errno_at(&m, name), ENOENT, "{name}");
    }
    // A watermark naming the outside file through the link is refused too.
    let name = format!("inside.jpg@watermark,image_{}", b64("link.jpg"));
    assert_ne!(errno_at(&m, &name), 0, "{name}");
    assert_eq!(watch.events(), 0, "imgfs opened the file outside the root");
    // A link that stays inside converts.
    assert_eq!(
        inspect(&m.path("in-link.jpg@format,png")),
        ("png".into(), 40, 30)
    );
}

#[test]
fn watermark_paths_cannot_leave_the_root() {
    let m = Mount::new_with_files(|src| {
        make_jpeg(&src.join("photo.jpg"), 80, 60);
        run(
            MAGICK,
            &[
                "-size",
                "8x8",
                "xc:red",
                src.join("mark.png").to_str().unwrap(),
            ],
        );
        let secret = src.parent().unwrap().join("secret.png");
        run(
            MAGICK,
            &["-size", "8x8", "xc:blue", secret.to_str().unwrap()],
        );
        fs::create_dir(src.join("sub")).unwrap();
    });
    let secret = m.source.parent().unwrap().join("secret.png");
    let mut watch = Watch::new(&secret);
    for path in [
        "../secret.png",
        "sub/../../secret.png",
        "./../secret.png",
        secret.to_str().unwrap(),
        "/etc/passwd",
        "/etc/../etc/passwd",
        "..",
        "sub/..",
    ] {
        let name = format!("photo.jpg@watermark,image_{}", b64(path));
        let got = errno_at(&m, &name);
        assert!(
            got == EINVAL || got == ENOENT,
            "watermark image_{path}: errno {got}"
        );
    }
    assert_eq!(watch.events(), 0, "imgfs opened a file outside the root");
    let good = format!("photo.jpg@watermark,image_{}", b64("mark.png"));
    assert_eq!(errno_at(&m, &good), 0);
    let good = format!("photo.jpg@watermark,image_{}", b64("sub/../mark.png"));
    let got = errno_at(&m, &good);
    assert!(got == 0 || got == EINVAL, "sub/../mark.png: {got}");
}
