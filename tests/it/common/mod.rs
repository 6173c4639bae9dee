//! Shared test fixtures: a real mount through /dev/fuse that unmounts on drop, the same
//! conversions by the library without a mount, sample images made by independent tools, and
//! independent decoders to check outputs.
#![allow(dead_code)]

mod library;
pub mod nginx;

pub use library::{convert_name, Library};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use imgfs::cache::disk::DiskCache;
use imgfs::cache::Cache;
use imgfs::options::MountOptions;
use imgfs::pipeline::memory::MemoryGate;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

static LOGGING: Once = Once::new();

fn init_logging() {
    LOGGING.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A mounted imgfs over a temporary source directory; unmounts when dropped.
pub struct Mount {
    pub source: PathBuf,
    pub mnt: PathBuf,
    pub cache: Arc<Cache>,
    pub memory_gate: Arc<MemoryGate>,
    /// The filesystem core behind the mount (inodes held, cache).
    pub fs: Arc<imgfs::core::ImgFs>,
    session: Option<fuser::BackgroundSession>,
    unmounter: imgfs::fuse::Unmounter,
    _dir: tempfile::TempDir,
}

impl Mount {
    pub fn new() -> Mount {
        Mount::with(
            MountOptions::default(),
            Settings::default(),
            Styles::default(),
            |_| {},
        )
    }

    /// Default options; `fill` writes the source directory before the mount.
    pub fn new_with_files(fill: impl FnOnce(&Path)) -> Mount {
        Mount::with(
            MountOptions::default(),
            Settings::default(),
            Styles::default(),
            fill,
        )
    }

    /// Mounts after `fill` has written the source directory. The default disk cache (the
    /// user's own directory) is turned off: a test that wants one names its directory.
    pub fn with(
        options: MountOptions,
        settings: Settings,
        styles: Styles,
        fill: impl FnOnce(&Path),
    ) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        fill(&source);
        Mount::over_with(dir, source, options, settings, styles)
    }

    /// Mounts the existing directory `source` (another mount's, to mount it again) with
    /// `options` and default settings.
    pub fn over(source: &Path, options: MountOptions) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let (settings, styles) = (Settings::default(), Styles::default());
        Mount::over_with(dir, source.to_path_buf(), options, settings, styles)
    }

    /// Like [`Mount::over`], with `styles`.
    pub fn over_styled(source: &Path, options: MountOptions, styles: Styles) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        Mount::over_with(
            dir,
            source.to_path_buf(),
            options,
            Settings::default(),
            styles,
        )
    }

    fn over_with(
        dir: tempfile::TempDir,
        source: PathBuf,
        mut options: MountOptions,
        settings: Settings,
        styles: Styles,
    ) -> Mount {
        init_logging();
        if options.disk_cache == MountOptions::default().disk_cache {
            options.disk_cache = None;
        }
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = imgfs::fuse::mount(&source, &mnt, settings, styles, &options)
            .expect("mount (tests need root and /dev/fuse)");
        let cache = mounted.fs.cache().clone();
        let memory_gate = mounted.fs.memory_gate().clone();
        let fs = mounted.fs.clone();
        let unmounter = mounted.unmounter;
        let session = mounted.session.spawn().expect("spawn session");
        // The mount is live once the kernel answers for it.
        for _ in 0..100 {
            if is_mounted(&mnt) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(is_mounted(&mnt), "mount did not appear");
        Mount {
            source,
            mnt,
            cache,
            memory_gate,
            fs,
            session: Some(session),
            unmounter,
            _dir: dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    pub fn conversions(&self) -> u64 {
        self.cache.stats.conversions.load(Ordering::SeqCst)
    }

    /// The mount's disk tier, if it has one.
    pub fn disk(&self) -> Option<Arc<DiskCache>> {
        self.fs.converter().disk().cloned()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            match self.unmounter.unmount() {
                // The session ends when the kernel ends the connection.
                Ok(()) => drop(session.join()),
                // Busy (a test left a file open): detach, and let the session end later.
                Err(_) => {
                    let _ = rustix::mount::unmount(&self.mnt, rustix::mount::UnmountFlags::DETACH);
                }
            }
        }
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path.to_str().unwrap_or("")))
}

/// Runs a command and returns its stdout; panics with stderr on failure.
pub fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (run scripts/setup-debian.sh)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// ImageMagick's `convert`, by its Debian path (a stand-in may shadow it on PATH).
pub const MAGICK: &str = "/usr/bin/convert";
pub const IDENTIFY: &str = "/usr/bin/identify";

/// A 400×267 photo-like JPEG (the size of docs/operations.md's examples).
pub fn make_jpeg(path: &Path, width: u32, height: u32) {
    let size = format!("{width}x{height}");
    run(
        MAGICK,
        &[
            "-size",
            &size,
            "plasma:red-blue",
            "-seed",
            "7",
            "-quality",
            "90",
            path.to_str().unwrap(),
        ],
    );
}

/// One small image per input format, made by ImageMagick and libheif's heif-enc.
pub fn make_every_format(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let jpg = dir.join("photo.jpg");
    make_jpeg(&jpg, 400, 267);
    let mut made = vec![("jpg", jpg.clone())];
    for ext in ["png", "gif", "bmp", "tiff", "webp"] {
        let path = dir.join(format!("photo.{ext}"));
        run(MAGICK, &[jpg.to_str().unwrap(), path.to_str().unwrap()]);
        made.push((ext, path));
    }
    let heic = dir.join("photo.heic");
    run(
        "heif-enc",
        &[
            "-q",
            "60",
            "-o",
            heic.to_str().unwrap(),
            jpg.to_str().unwrap(),
        ],
    );
    made.push(("heic", heic));
    let avif = dir.join("photo.avif");
    run(
        "heif-enc",
        &[
            "-A",
            "-q",
            "60",
            "-o",
            avif.to_str().unwrap(),
            jpg.to_str().unwrap(),
        ],
    );
    made.push(("avif", avif));
    made
}

/// (format, width, height) as an independent decoder sees the file.
pub fn inspect(path: &Path) -> (String, u32, u32) {
    let head = std::fs::read(path).unwrap();
    if head.len() > 12 && &head[4..8] == b"ftyp" {
        // HEIF: libheif's own tool from Debian (not the library imgfs links).
        let info = String::from_utf8(run("heif-info", &[path.to_str().unwrap()])).unwrap();
        let brand = info
            .lines()
            .find_map(|l| l.strip_prefix("main brand: "))
            .unwrap_or("?")
            .to_string();
        let dims = info
            .lines()
            .find_map(|l| l.strip_prefix("image: "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or("0x0")
            .to_string();
        let (w, h) = dims.split_once('x').unwrap();
        return (brand, w.parse().unwrap(), h.parse().unwrap());
    }
    if head.starts_with(b"RIFF") {
        // WebP: libwebp's dwebp.
        let out = Command::new("dwebp")
            .args([path.to_str().unwrap(), "-o", "/dev/null"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "dwebp failed: {text}");
        let (w, h) = webp_dims(&text);
        return ("webp".into(), w, h);
    }
    let out = run(IDENTIFY, &["-format", "%m %w %h\n", path.to_str().unwrap()]);
    let text = String::from_utf8(out).unwrap();
    let first: Vec<&str> = text.lines().next().unwrap().split(' ').collect();
    let format = match first[0].to_lowercase().as_str() {
        "bmp3" | "bmp2" => "bmp".to_string(),
        other => other.to_string(),
    };
    (format, first[1].parse().unwrap(), first[2].parse().unwrap())
}

fn webp_dims(dwebp_stderr: &str) -> (u32, u32) {
    // "Decoded x. Dimensions: 200 x 134 . Format: lossy."
    let line = dwebp_stderr
        .lines()
        .find(|l| l.contains("Dimensions:"))
        .and_then(|l| l.split("Dimensions:").nth(1))
        .unwrap_or_else(|| panic!("dwebp printed no dimensions: {dwebp_stderr}"));
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// The errno of a failed filesystem call.
pub fn errno_of(result: std::io::Result<impl Sized>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether to run the calling test's body here: false in the test binary, after running
/// `test` (its path, e.g. `load::name`) again alone in a child process; true in that child.
/// For tests that measure the process's peak memory, which every test running beside them
/// in this one binary would add to.
pub fn in_own_process(test: &str) -> bool {
    const CHILD: &str = "IMGFS_TEST_IN_OWN_PROCESS";
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} in its own process: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imgfs"))
}

/// `text` as the unpadded URL-safe base64 OSS writes in names (watermark paths, texts, styles).
pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The errno of stat, open and read of `name` (all three must agree), 0 for success.
pub fn errno_at(m: &Mount, name: &str) -> i32 {
    let stat = errno_of(std::fs::metadata(m.path(name)));
    let read = errno_of(std::fs::read(m.path(name)));
    assert_eq!(stat, read, "{name}: stat and read disagree");
    stat
}

pub fn assert_mount_alive(m: &Mount, good: &str) {
    let bytes = std::fs::read(m.path(good)).expect("a good variant still reads");
    assert_eq!(
        bytes.len() as u64,
        std::fs::metadata(m.path(good)).unwrap().len()
    );
    assert!(!bytes.is_empty());
}

/// `command` (the binary, or a wrapper running it) mounting `src` on `mnt` with `options`,
/// once the mount is there.
pub fn mounted_by(
    mut command: Command,
    src: &Path,
    mnt: &Path,
    options: &[&str],
) -> std::process::Child {
    let child = command
        .args(["mount", "--no-disk-cache"])
        .args(options)
        .args([src, mnt])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !crate::common::is_mounted(mnt) {
        assert!(started.elapsed() < Duration::from_secs(10), "no mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// inotify watch for opens and reads of `path`; `events()` drains what happened since.
pub struct Watch(std::fs::File);

impl Watch {
    pub fn new(path: &Path) -> Watch {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls; the fd is owned by the File from here on.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0);
            let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            let wd = libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS);
            assert!(wd >= 0, "inotify_add_watch {}", path.display());
            Watch(std::fs::File::from_raw_fd(fd))
        }
    }

    pub fn events(&mut self) -> usize {
        let mut buf = [0u8; 4096];
        match std::io::Read::read(&mut self.0, &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("inotify: {e}"),
        }
    }
}
