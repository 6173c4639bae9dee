//! Issue 13: whole-tree views through the kernel, walked by real tools (find, du, ls -l,
//! rsync -a, cp -r) and checked with independent decoders. Mounts: root and `/dev/fuse`.

use std::fs;
use std::path::Path;
use std::process::Command;

use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

use crate::common::{inspect, make_jpeg, run, Mount};

fn text(program: &str, args: &[&str]) -> String {
    String::from_utf8(run(program, args)).unwrap()
}

/// Relative paths of regular files under `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = text("find", &[dir.to_str().unwrap(), "-type", "f"])
        .lines()
        .map(|l| l.strip_prefix(dir.to_str().unwrap()).unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn tools_that_walk_directories_see_the_converted_tree() {
    let mut styles = Styles::default();
    styles.add("phone", "resize,l_64@format,webp").unwrap();
    let m = Mount::with(
        MountOptions::default(),
        Settings::default(),
        styles,
        |src| {
            fs::create_dir_all(src.join("2024/summer")).unwrap();
            make_jpeg(&src.join("a.jpg"), 320, 200);
            make_jpeg(&src.join("2024/b.JPG"), 200, 320);
            make_jpeg(&src.join("2024/summer/c.jpeg"), 160, 100);
            make_jpeg(&src.join("2024/summer/c.png"), 100, 100); // a JPEG named .png
            fs::write(src.join("2024/notes.txt"), b"not shown").unwrap();
        },
    );
    let view = m.path("@style,phone");
    // find: the directories mirrored, the images renamed, the rest left out.
    assert_eq!(
        files(&view),
        [
            "/2024/b.webp",
            "/2024/summer/c.png.webp",
            "/2024/summer/c.webp",
            "/a.webp"
        ]
    );
    // ls -l and stat agree with the bytes, which are the @style variant's.
    for (shown, variant) in [
        ("a.webp", "a.jpg@style,phone"),
        ("2024/b.webp", "2024/b.JPG@style,phone"),
        ("2024/summer/c.webp", "2024/summer/c.jpeg@style,phone"),
        ("2024/summer/c.png.webp", "2024/summer/c.png@style,phone"),
    ] {
        let bytes = fs::read(view.join(shown)).unwrap();
        assert_eq!(
            fs::metadata(view.join(shown)).unwrap().len(),
            bytes.len() as u64
        );
        assert_eq!(bytes, fs::read(m.path(variant)).unwrap(), "{shown}");
        let (format, w, h) = inspect(&view.join(shown));
        assert_eq!(format, "webp", "{shown}");
        assert!(w.max(h) == 64, "{shown}: {w}x{h}");
    }
    let listing = text("ls", &["-l", view.join("2024/summer").to_str().unwrap()]);
    assert!(
        listing.contains("c.webp") && !listing.contains('?'),
        "{listing}"
    );
    // du adds up the exact sizes (apparent size in bytes).
    let du = text("du", &["-sb", view.to_str().unwrap()]);
    let total: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    assert!(total > 0);
    // rsync -a and cp -r copy the view as it is listed.
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("rsync");
    let status = Command::new("rsync")
        .args([
            "-a",
            &format!("{}/", view.display()),
            copy.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(files(&copy), files(&view));
    for name in files(&view) {
        let (a, b) = (copy.join(&name[1..]), view.join(&name[1..]));
        assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap(), "{name}");
    }
    let cp = out.path().join("cp");
    run("cp", &["-r", view.to_str().unwrap(), cp.to_str().unwrap()]);
    assert_eq!(files(&cp), files(&view));
    // Not listed in the root; an unknown style is not there.
    let root: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !root.iter().any(|n| n.to_string_lossy().starts_with('@')),
        "{root:?}"
    );
    assert!(!m.path("@style,nope").exists());
}

#[test]
fn a_view_listing_being_converted_never_holds_the_request_threads() {
    // Hostile review of 2026-12-03: READDIRPLUS of a view waited for its batch of conversions
    // on the request thread; with every request thread in such listings, even reads of
    // originals waited. One request thread makes that certain.
    let mut styles = Styles::default();
    styles
        .add("slow", "resize,p_99@format,heic@quality,Q_90")
        .unwrap();
    let options = MountOptions {
        fuse_threads: 1,
        jobs: 1,
        ..MountOptions::default()
    };
    let m = Mount::with(options, Settings::default(), styles, |src| {
        fs::create_dir(src.join("many")).unwrap();
        for i in 0..12 {
            make_jpeg(&src.join(format!("many/{i:02}.jpg")), 1600, 1200);
        }
        fs::write(src.join("notes.txt"), b"original").unwrap();
    });
    let view = m.path("@style,slow/many");
    let listing = std::thread::spawn(move || {
        let out = Command::new("ls").arg("-l").arg(&view).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    });
    // Once the listing's conversions run (counted in the metrics file), an original reads
    // while they are still running.
    let started = std::time::Instant::now();
    loop {
        let metrics = fs::read_to_string(m.path(".imgfs/metrics")).unwrap();
        if metrics
            .lines()
            .any(|l| l.starts_with("imgfs_conversions_total") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(fs::read(m.path("notes.txt")).unwrap(), b"original");
    assert!(
        !listing.is_finished(),
        "the listing ended first: the test proves nothing"
    );
    let listed = listing.join().unwrap();
    assert_eq!(
        listed.lines().filter(|l| l.contains(".heic")).count(),
        12,
        "{listed}"
    );
}
