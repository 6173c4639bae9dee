//! The core without a mount: requests as the adapter makes them, answers as it gets them.
//! One test per defect fixed here (issue numbers in the names' comments).

use std::ffi::OsStr;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::{Attr, ImgFs, ROOT};
use crate::error::Result;
use crate::options::MountOptions;
use crate::source::Caller;
use crate::spec::{encode_base64, Styles};

/// Longer than any conversion here takes; an answer that does not come is a wedge.
const PATIENCE: Duration = Duration::from_secs(30);

fn png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

fn mount(source: &Path) -> Arc<ImgFs> {
    let options = MountOptions {
        jobs: 2,
        disk_cache: None,
        ..MountOptions::default()
    };
    ImgFs::new(source, Default::default(), Styles::default(), &options).unwrap()
}

fn answer<T: Send + 'static>(ask: impl FnOnce(Box<dyn FnOnce(Result<T>) + Send>)) -> Result<T> {
    let (tx, rx) = mpsc::channel();
    ask(Box::new(move |result| {
        let _ = tx.send(result);
    }));
    rx.recv_timeout(PATIENCE)
        .expect("no answer: a request is wedged")
}

/// Looks `path` up component by component from the root, as the kernel does.
fn lookup(fs: &Arc<ImgFs>, caller: &Caller, path: &str) -> Result<Attr> {
    let mut parent = ROOT;
    let mut attr = None;
    for name in path.split('/') {
        let found = answer(|reply| fs.lookup(caller, parent, OsStr::new(name), reply))?;
        parent = found.ino;
        attr = Some(found);
    }
    Ok(attr.expect("a name"))
}

fn read(fs: &Arc<ImgFs>, caller: &Caller, path: &str) -> Result<Vec<u8>> {
    let attr = lookup(fs, caller, path)?;
    let (fh, _) = answer(|reply| fs.open(caller, attr.ino, reply))?;
    let bytes = fs.read(fh, 0, u32::MAX)?.bytes().to_vec();
    fs.release(fh);
    assert_eq!(
        bytes.len() as u64,
        attr.meta.size,
        "{path}: size and bytes agree"
    );
    Ok(bytes)
}

fn errno(result: Result<impl Sized>) -> i32 {
    result.map(|_| 0).unwrap_or_else(|e| e.errno())
}

fn mark(path: &str) -> String {
    format!("watermark,image_{},g_nw,x_0,y_0", encode_base64(path))
}

fn first_pixel(png_bytes: &[u8]) -> [u8; 3] {
    image::load_from_memory(png_bytes)
        .unwrap()
        .to_rgb8()
        .get_pixel(0, 0)
        .0
}

#[test]
fn a_directory_swapped_for_a_link_out_of_the_root_is_never_read_through() {
    // Issue 11, defect 1.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::create_dir(dir.path().join("outside")).unwrap();
    png(&src.join("d/a.png"), 4, 4, [0, 0, 255]);
    png(&dir.path().join("outside/secret.png"), 4, 4, [255, 0, 0]);
    let fs = mount(&src);
    let root = Caller::root();
    // The kernel holds `d` (and its inode's path) from here on.
    let d = lookup(&fs, &root, "d").unwrap();
    assert!(read(&fs, &root, "d/a.png@format,png").is_ok());
    std::fs::rename(src.join("d"), dir.path().join("d-moved")).unwrap();
    symlink(dir.path().join("outside"), src.join("d")).unwrap();
    for name in ["secret.png", "secret.png@format,png"] {
        let found = answer(|reply| fs.lookup(&root, d.ino, OsStr::new(name), reply));
        assert_eq!(errno(found), libc::ENOENT, "d/{name}");
    }
    assert_eq!(errno(fs.opendir(d.ino)), libc::ENOENT);
}

#[test]
fn an_edited_watermark_image_makes_a_new_version() {
    // Issue 11, defect 2.
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("base.png"), 8, 8, [255, 255, 255]);
    png(&dir.path().join("logo.png"), 2, 2, [255, 0, 0]);
    let fs = mount(dir.path());
    let name = format!("base.png@{}@format,png", mark("logo.png"));
    let before = lookup(&fs, &Caller::root(), &name).unwrap();
    assert_eq!(
        first_pixel(&read(&fs, &Caller::root(), &name).unwrap()),
        [255, 0, 0]
    );
    png(&dir.path().join("logo.png"), 3, 3, [0, 0, 255]);
    let after = lookup(&fs, &Caller::root(), &name).unwrap();
    assert_ne!(before.ino, after.ino, "a new version is a new inode");
    assert_eq!(
        first_pixel(&read(&fs, &Caller::root(), &name).unwrap()),
        [0, 0, 255]
    );
    let conversions = fs
        .cache()
        .stats
        .conversions
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(conversions, 2);
}

#[test]
fn fifos_as_sources_or_watermarks_answer_at_once() {
    // Issue 15, item 3: a FIFO used to block a worker in open(2) until someone wrote it.
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("base.png"), 8, 8, [255, 255, 255]);
    let fifo = dir.path().join("pipe");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
    )
    .unwrap();
    symlink("pipe", dir.path().join("to-pipe")).unwrap();
    let fs = mount(dir.path());
    let root = Caller::root();
    for name in [
        format!("base.png@{}@format,png", mark("pipe")),
        format!("base.png@{}@format,png", mark("to-pipe")),
        "pipe@format,png".to_string(),
        "to-pipe@format,png".to_string(),
    ] {
        assert_eq!(errno(lookup(&fs, &root, &name)), libc::ENOENT, "{name}");
    }
    // Every worker is still free: a real conversion goes through.
    assert!(read(&fs, &root, "base.png@format,webp").is_ok());
}

#[test]
fn a_source_swapped_for_a_fifo_after_lookup_is_not_opened() {
    // Issue 15, item 3: the conversion reads the file the lookup found, never the name.
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("a.png"), 8, 8, [0, 255, 0]);
    let fs = mount(dir.path());
    let root = Caller::root();
    let found = super::names::resolve(
        fs.root(),
        Path::new(""),
        OsStr::new("a.png@format,bmp"),
        &root,
    );
    let Ok(super::names::Resolved::Variant { found, .. }) = found else {
        panic!("a variant");
    };
    std::fs::rename(dir.path().join("a.png"), dir.path().join("old.png")).unwrap();
    let fifo = dir.path().join("a.png");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
    )
    .unwrap();
    // The found descriptor is still the PNG.
    let file = found.open(Path::new("a.png")).unwrap();
    let (bytes, _) =
        crate::source::read_file(&file, Path::new("a.png"), &Default::default()).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // And the name now is a FIFO: refused at once.
    assert_eq!(errno(lookup(&fs, &root, "a.png@format,bmp")), libc::ENOENT);
}

#[test]
fn a_watermark_or_link_target_the_caller_may_not_read_refuses_the_variant() {
    // Issue 15, items 1 and 2, judged as the kernel judges the mount's mode bits.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    png(&src.join("base.png"), 8, 8, [255, 255, 255]);
    std::fs::create_dir_all(src.join("open")).unwrap();
    std::fs::create_dir_all(src.join("closed")).unwrap();
    std::fs::create_dir_all(src.join("private")).unwrap();
    png(&src.join("open/secret.png"), 2, 2, [1, 2, 3]);
    png(&src.join("open/public.png"), 2, 2, [0, 0, 0]);
    png(&src.join("closed/secret.png"), 2, 2, [1, 2, 3]);
    std::fs::write(src.join("closed/text.png"), b"not an image").unwrap();
    png(&src.join("private/secret.png"), 2, 2, [1, 2, 3]);
    symlink("private/secret.png", src.join("link.png")).unwrap();
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(src.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("open/secret.png", 0o600);
    mode("closed", 0o700);
    mode("private", 0o700);
    let fs = mount(src);
    // The files are the test's; someone else asks.
    let ours = std::fs::metadata(src.join("base.png")).unwrap();
    let (me, my_group) = (ours.uid(), ours.gid());
    let other = Caller::new(if me == 65534 { 65533 } else { 65534 }, 65534, 0);
    let owner = Caller::new(me, my_group, 0);
    let stamped = |path: &str| format!("base.png@{}@format,png", mark(path));
    for (name, owners) in [
        (stamped("open/secret.png"), 0),
        (stamped("closed/secret.png"), 0),
        // No hint of what a closed directory holds: the same answer for anything in it.
        (stamped("closed/text.png"), libc::EIO),
        (stamped("closed/nothing.png"), libc::ENOENT),
        ("link.png@format,png".to_string(), 0),
        ("private/secret.png@format,png".to_string(), 0),
    ] {
        // The owner first, so a conversion is cached (or its error) when the other asks.
        assert_eq!(errno(read(&fs, &owner, &name)), owners, "{name}: the owner");
        assert_eq!(errno(lookup(&fs, &other, &name)), libc::EACCES, "{name}");
    }
    // An inode the owner looked up cannot be opened by the other either.
    let attr = lookup(&fs, &owner, "link.png@format,png").unwrap();
    let opened = answer(|reply| fs.open(&other, attr.ino, reply));
    assert_eq!(errno(opened), libc::EACCES);
    // What the other may read works for them.
    assert!(read(&fs, &other, &stamped("open/public.png")).is_ok());
}

#[test]
fn forgotten_names_leave_nothing_behind() {
    // Issue 15, item 5: the table is as large as what the kernel holds.
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("a.png"), 4, 4, [9, 9, 9]);
    let fs = mount(dir.path());
    let root = Caller::root();
    let mut numbers = Vec::new();
    for w in 1..=200 {
        numbers.push(
            lookup(&fs, &root, &format!("a.png@resize,w_{w}"))
                .unwrap()
                .ino,
        );
    }
    assert_eq!(fs.inode_count(), 201);
    for &ino in &numbers {
        fs.forget(ino, 1);
    }
    assert_eq!(fs.inode_count(), 1, "only the root is left");
    // A name forgotten and looked up again has its number back.
    let again = lookup(&fs, &root, "a.png@resize,w_7").unwrap().ino;
    assert_eq!(again, numbers[6]);
}

#[test]
fn a_watermark_that_loops_or_leaves_the_root_is_not_found() {
    // Issue 15, item 6: ELOOP and friends never reach the caller.
    let dir = tempfile::tempdir().unwrap();
    png(&dir.path().join("base.png"), 8, 8, [255, 255, 255]);
    symlink("loop.png", dir.path().join("loop.png")).unwrap();
    symlink("/etc/hostname", dir.path().join("out.png")).unwrap();
    let fs = mount(dir.path());
    for path in ["loop.png", "out.png", "/etc/passwd"] {
        let name = format!("base.png@{}", mark(path));
        assert_eq!(
            errno(lookup(&fs, &Caller::root(), &name)),
            libc::ENOENT,
            "{path}"
        );
    }
    // A `..` is refused by the grammar itself.
    let name = format!("base.png@{}", mark("../x.png"));
    assert_eq!(errno(lookup(&fs, &Caller::root(), &name)), libc::EINVAL);
}
