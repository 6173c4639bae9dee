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
