//! The filesystem contract (docs/filesystem.md), through a real mount and the kernel.
//! Every test mounts: root and `/dev/fuse` needed.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{errno_of, inspect, make_every_format, make_jpeg, run, Mount, MAGICK};
use imgfs::limits::Limits;
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

fn mount_with(fill: impl FnOnce(&Path)) -> Mount {
    Mount::with(
        MountOptions::default(),
        Settings::default(),
        Styles::default(),
        fill,
    )
}

/// Reads a variant through the kernel and checks that stat's size is exactly what a read gives.
fn read_exact_size(path: &Path) -> Vec<u8> {
    let size = fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    let bytes = fs::read(path).unwrap();
    assert_eq!(
        size,
        bytes.len() as u64,
        "st_size of {} differs from its bytes",
        path.display()
    );
    assert!(size > 0);
    bytes
}

#[test]
fn originals_are_the_source_tree_as_it_is() {
    let m = mount_with(|src| {
        fs::create_dir_all(src.join("album/nested")).unwrap();
        make_jpeg(&src.join("album/a.jpg"), 64, 48);
        fs::write(src.join("notes.txt"), b"hello").unwrap();
        fs::write(src.join("album/nested/deep.bin"), vec![7u8; 300_000]).unwrap();
        fs::set_permissions(src.join("notes.txt"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("a.jpg", src.join("album/inside-link.jpg")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", src.join("outside-link")).unwrap();
    });
    for rel in [
        "notes.txt",
        "album/a.jpg",
        "album/nested/deep.bin",
        "album",
        "outside-link",
    ] {
        let a = fs::symlink_metadata(m.source.join(rel)).unwrap();
        let b = fs::symlink_metadata(m.path(rel)).unwrap();
        assert_eq!(
            (a.len(), a.mode(), a.uid(), a.gid()),
            (b.len(), b.mode(), b.uid(), b.gid()),
            "{rel}"
        );
        assert_eq!(
            (a.mtime(), a.mtime_nsec()),
            (b.mtime(), b.mtime_nsec()),
            "{rel}"
        );
    }
    assert_eq!(
        fs::read(m.path("album/nested/deep.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(
        fs::read_link(m.path("outside-link")).unwrap(),
        Path::new("/etc/hostname")
    );
    let mut names: Vec<String> = fs::read_dir(m.path("album"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.jpg", "inside-link.jpg", "nested"]);
    // cp -r, find and rsync -a see the same tree (variants are not listed).
    let copy = tempfile::tempdir().unwrap();
    run(
        "cp",
        &[
            "-a",
            m.mnt.to_str().unwrap(),
            copy.path().join("cp").to_str().unwrap(),
        ],
    );
    run(
        "diff",
        &[
            "-r",
            "--no-dereference",
            m.source.to_str().unwrap(),
            copy.path().join("cp").to_str().unwrap(),
        ],
    );
    let rsync_dst = format!("{}/", copy.path().join("rsync").display());
    run(
        "rsync",
        &["-a", &format!("{}/", m.mnt.display()), &rsync_dst],
    );
    run(
        "diff",
        &[
            "-r",
            "--no-dereference",
            m.source.to_str().unwrap(),
            &rsync_dst,
        ],
    );
    let found = String::from_utf8(run("find", &[m.mnt.to_str().unwrap(), "-type", "f"])).unwrap();
    assert_eq!(found.lines().count(), 3, "{found}");
}

#[test]
fn every_input_format_converts_to_every_output_format() {
    let m = mount_with(|src| {
        make_every_format(src);
    });
    let inputs = ["jpg", "png", "gif", "bmp", "tiff", "webp", "heic", "avif"];
    let outputs = [
        ("jpg", "jpeg"),
        ("png", "png"),
        ("webp", "webp"),
        ("bmp", "bmp"),
        ("gif", "gif"),
        ("tiff", "tiff"),
        ("heic", "heic"),
        ("avif", "avif"),
    ];
    for input in inputs {
        for (format, decoded_as) in outputs {
            let name = format!("photo.{input}@format,{format}@resize,w_200");
            let path = m.path(&name);
            read_exact_size(&path);
            let (seen, w, h) = inspect(&path);
            assert_eq!((seen.as_str(), w, h), (decoded_as, 200, 134), "{name}");
        }
        // Without format, the source's format is kept.
        let (seen, w, h) = inspect(&m.path(&format!("photo.{input}@resize,l_100")));
        assert_eq!((w, h), (100, 67), "{input}: {seen}");
    }
}

#[test]
fn resize_worked_examples_of_the_grammar() {
    let m = mount_with(|src| {
        run(
            MAGICK,
            &[
                "-size",
                "200x100",
                "gradient:red-blue",
                src.join("wide.png").to_str().unwrap(),
            ],
        );
        run(
            MAGICK,
            &[
                "-size",
                "3924x2550",
                "gradient:white-black",
                "-quality",
                "80",
                src.join("big.jpg").to_str().unwrap(),
            ],
        );
    });
    let cases = [
        ("wide.png@resize,m_lfit,w_150,h_80", (150, 75)),
        ("wide.png@resize,m_mfit,w_150,h_80", (160, 80)),
        ("wide.png@resize,m_fill,w_150,h_80", (150, 80)),
        ("wide.png@resize,m_pad,w_150,h_80", (150, 80)),
        ("wide.png@resize,m_fixed,w_150,h_80", (150, 80)),
        ("wide.png@resize,p_50", (100, 50)),
        ("wide.png@resize,w_400", (200, 100)),
        ("wide.png@resize,w_400,limit_0", (400, 200)),
        ("big.jpg@format,heic@resize,l_900,h_600", (923, 600)),
        ("big.jpg@resize,l_900,h_600@format,webp", (923, 600)),
        ("big.jpg@image/format,webp", (0, 0)),
    ];
    for (name, (w, h)) in cases {
        if w == 0 {
            assert_eq!(errno_of(fs::metadata(m.path(name))), libc::EINVAL, "{name}");
            continue;
        }
        read_exact_size(&m.path(name));
        let (_, got_w, got_h) = inspect(&m.path(name));
        assert_eq!((got_w, got_h), (w, h), "{name}");
    }
    // pad fills with colour; fill crops.
    let padded = image::load_from_memory(
        &fs::read(m.path("wide.png@resize,m_pad,w_150,h_80,color_00FF00")).unwrap(),
    )
    .unwrap()
    .to_rgb8();
    assert_eq!(padded.get_pixel(75, 0).0, [0, 255, 0]);
}

#[test]
fn equal_specs_share_one_cache_entry() {
    let m = mount_with(|src| make_jpeg(&src.join("p.jpg"), 120, 80));
    let a = fs::read(m.path("p.jpg@resize,w_60,h_40@format,png")).unwrap();
    let b = fs::read(m.path("p.jpg@format,png@resize,h_40,w_60,m_lfit")).unwrap();
    assert_eq!(a, b);
    assert_eq!(m.conversions(), 1);
}

#[test]
fn errors_have_their_errno_and_the_mount_stays_up() {
    let m = Mount::with(
        MountOptions::default(),
        Settings {
            limits: Limits {
                max_source_side: 1000,
                ..Limits::default()
            },
            ..Settings::default()
        },
        Styles::default(),
        |src| {
            make_jpeg(&src.join("ok.jpg"), 40, 30);
            make_jpeg(&src.join("huge.jpg"), 1200, 20);
            fs::write(src.join("text.jpg"), b"this is not an image").unwrap();
            fs::write(src.join("empty.png"), b"").unwrap();
        },
    );
    let cases = [
        ("missing.jpg@format,png", libc::ENOENT),
        ("missing.jpg", libc::ENOENT),
        ("ok.jpg@resize,w_0", libc::EINVAL),
        ("ok.jpg@sepia,1", libc::EINVAL),
        ("ok.jpg@format,jp2", libc::EINVAL),
        ("huge.jpg@format,png", libc::EFBIG),
        ("ok.jpg@resize,w_16384,h_16384,m_fixed,limit_0", libc::EFBIG),
        ("text.jpg@format,png", libc::EIO),
        ("empty.png@format,webp", libc::EIO),
    ];
    for _ in 0..2 {
        // Twice: the second time the error comes from the cache, same errno.
        for (name, errno) in cases {
            assert_eq!(errno_of(fs::metadata(m.path(name))), errno, "{name}");
            assert_eq!(errno_of(fs::read(m.path(name))), errno, "{name}");
        }
    }
    // Writes of every kind are EROFS, and the source is untouched.
    assert_eq!(errno_of(fs::write(m.path("new.txt"), b"x")), libc::EROFS);
    assert_eq!(
        errno_of(fs::OpenOptions::new().write(true).open(m.path("ok.jpg"))),
        libc::EROFS
    );
    assert_eq!(errno_of(fs::remove_file(m.path("ok.jpg"))), libc::EROFS);
    assert_eq!(
        errno_of(fs::rename(m.path("ok.jpg"), m.path("moved.jpg"))),
        libc::EROFS
    );
    assert_eq!(errno_of(fs::create_dir(m.path("dir"))), libc::EROFS);
    assert_eq!(
        errno_of(fs::set_permissions(
            m.path("ok.jpg"),
            fs::Permissions::from_mode(0o777)
        )),
        libc::EROFS
    );
    assert_eq!(
        errno_of(
            fs::OpenOptions::new()
                .write(true)
                .open(m.path("ok.jpg@format,png"))
        ),
        libc::EROFS
    );
    // The mount still serves.
    read_exact_size(&m.path("ok.jpg@format,png"));
}

#[test]
fn an_open_file_keeps_its_bytes_after_eviction() {
    // Heap bytes (a 180 KB BMP) and a memory file read by passthrough (a 720 KB BMP). The
    // budget holds about one: each new variant evicts the previous one.
    for (width, height) in [(300, 200), (600, 400)] {
        let options = MountOptions {
            cache_bytes: width * height * 3 + 50_000,
            ..MountOptions::default()
        };
        let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
            make_jpeg(&src.join("p.jpg"), width as u32, height as u32);
        });
        let first = m.path("p.jpg@format,bmp");
        let expected = read_exact_size(&first);
        let mut open = fs::File::open(&first).unwrap();
        for w in [width - 50, width - 40, width - 30] {
            read_exact_size(&m.path(&format!("p.jpg@format,bmp@resize,w_{w}")));
        }
        assert!(m.cache.stats.evictions.load(Ordering::SeqCst) >= 1);
        let mut held = Vec::new();
        open.read_to_end(&mut held).unwrap();
        assert_eq!(held, expected, "{width}x{height}");
        // A second open while the first is held: reconverted, same bytes (and for the
        // memory file, the kernel's one backing file per inode is the first open's).
        assert_eq!(read_exact_size(&first), expected, "{width}x{height}");
    }
}

/// Shared and private resident KiB (clean and dirty) of this process's mapping that
/// contains `addr`.
fn mapping_sharing(addr: usize) -> (u64, u64) {
    let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    let (mut shared, mut private) = (0, 0);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let range = usize::from_str_radix(start, 16).unwrap_or(0)
                ..usize::from_str_radix(end, 16).unwrap_or(0);
            inside = range.contains(&addr);
        } else if inside {
            let kib: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            match first {
                "Shared_Clean:" | "Shared_Dirty:" => shared += kib,
                "Private_Clean:" | "Private_Dirty:" => private += kib,
                _ => {}
            }
        }
    }
    (shared, private)
}

#[test]
fn a_large_variant_is_read_by_the_kernel_from_imgfs_memory() {
    for passthrough in [true, false] {
        let options = MountOptions {
            passthrough,
            ..MountOptions::default()
        };
        let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
            make_jpeg(&src.join("p.jpg"), 800, 600);
        });
        let large = m.path("p.jpg@format,bmp");
        let small = m.path("p.jpg@format,png@resize,w_40");
        for path in [&large, &small] {
            let bytes = read_exact_size(path);
            let file = fs::File::open(path).unwrap();
            // SAFETY: a read-only map of a file on a read-only mount.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            assert_eq!(&map[..], &bytes[..], "{}", path.display());
            let (shared, private) = mapping_sharing(map.as_ptr() as usize);
            let kib = bytes.len() as u64 / 1024;
            if passthrough && path == &large {
                // The mapped pages are imgfs's own memory file's, mapped by the cache too,
                // so the kernel counts them shared: the bytes are in memory once.
                assert!(kib > 1000 && shared >= kib, "shared {shared} KiB of {kib}");
                assert_eq!(private, 0);
            } else {
                // Through FUSE: the variant's own page cache, a copy mapped only here.
                assert_eq!(shared, 0, "{} passthrough {passthrough}", path.display());
                assert!(private > 0, "private {private} KiB");
            }
        }
        assert_eq!(inspect(&large), ("bmp".into(), 800, 600));
        assert_eq!(inspect(&small).0, "png");
        // The original, read by the kernel or (without passthrough) by imgfs.
        let original = fs::read(m.path("p.jpg")).unwrap();
        assert_eq!(original, fs::read(m.source.join("p.jpg")).unwrap());
    }
}

#[test]
fn concurrent_readers_of_a_new_variant_cause_one_conversion() {
    let m = mount_with(|src| make_jpeg(&src.join("p.jpg"), 1600, 1200));
    let name = m.path("p.jpg@format,heic@resize,w_800");
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || fs::read(name).unwrap())
        })
        .collect();
    let results: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|r| r == &results[0] && !r.is_empty()));
    assert_eq!(m.conversions(), 1);
}

#[test]
fn a_small_convert_memory_lets_one_conversion_run_at_a_time() {
    let options = MountOptions {
        jobs: 4,
        convert_memory: Some(1),
        ..MountOptions::default()
    };
    let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
        for i in 0..4 {
            make_jpeg(&src.join(format!("p{i}.jpg")), 1600, 1200);
        }
    });
    let formats = ["png", "webp", "heic", "jpg"];
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let name = m.path(&format!("p{i}.jpg@format,{}@resize,w_1200", formats[i]));
            std::thread::spawn(move || (read_exact_size(&name), inspect(&name)))
        })
        .collect();
    for thread in threads {
        let (_, (_, width, height)) = thread.join().unwrap();
        assert_eq!((width, height), (1200, 900));
    }
    // Four jobs, but every estimate exceeds the budget: each ran alone, none failed.
    assert_eq!(m.conversions(), 4);
    assert_eq!(m.memory_gate.most_running(), 1);
    assert_eq!(m.memory_gate.in_use(), 0);
}

#[test]
fn an_edited_source_is_reconverted() {
    let options = MountOptions {
        attr_ttl: Duration::from_millis(100),
        ..MountOptions::default()
    };
    let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
        make_jpeg(&src.join("p.jpg"), 400, 200);
    });
    let variant = m.path("p.jpg@format,png@resize,p_50");
    read_exact_size(&variant);
    assert_eq!(inspect(&variant).1, 200);
    // Atomically replace the source with a different image.
    let tmp = m.source.join("next.jpg");
    make_jpeg(&tmp, 600, 300);
    fs::rename(&tmp, m.source.join("p.jpg")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    read_exact_size(&variant);
    assert_eq!(inspect(&variant).1, 300);
    // Edited in place (same inode): the new content shows too.
    make_jpeg(&tmp, 800, 400);
    fs::write(m.source.join("p.jpg"), fs::read(&tmp).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    read_exact_size(&variant);
    assert_eq!(inspect(&variant).1, 400);
    assert_eq!(m.conversions(), 3);
}

#[test]
fn reads_go_on_while_a_conversion_runs() {
    let m = mount_with(|src| {
        make_jpeg(&src.join("big.jpg"), 4000, 3000);
        make_jpeg(&src.join("small.jpg"), 64, 48);
    });
    read_exact_size(&m.path("small.jpg@format,png"));
    let done = Arc::new(AtomicBool::new(false));
    let slow = {
        let (path, done) = (m.path("big.jpg@format,heic"), done.clone());
        std::thread::spawn(move || {
            let bytes = fs::read(path).unwrap();
            done.store(true, Ordering::SeqCst);
            bytes
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    // While the full-size HEIC encode runs: list, read an original, read a cached variant.
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 2);
    assert!(!fs::read(m.path("small.jpg")).unwrap().is_empty());
    read_exact_size(&m.path("small.jpg@format,png"));
    assert!(
        !done.load(Ordering::SeqCst),
        "the conversion ended before the reads: no overlap shown"
    );
    assert!(!slow.join().unwrap().is_empty());
}

#[test]
fn info_average_hue_quality_and_interlace() {
    let m = mount_with(|src| {
        make_jpeg(&src.join("p.jpg"), 400, 267);
        run(
            MAGICK,
            &[
                "-size",
                "50x40",
                "xc:#336699",
                src.join("solid.png").to_str().unwrap(),
            ],
        );
    });
    let info: serde_json::Value =
        serde_json::from_slice(&read_exact_size(&m.path("p.jpg@info"))).unwrap();
    let size = fs::metadata(m.path("p.jpg")).unwrap().len().to_string();
    assert_eq!(info["FileSize"]["value"], size.as_str());
    assert_eq!(info["Format"]["value"], "jpg");
    assert_eq!(info["ImageWidth"]["value"], "400");
    assert_eq!(info["ImageHeight"]["value"], "267");
    assert_eq!(info["FrameCount"]["value"], "1");
    // info after operations describes the result.
    let info: serde_json::Value = serde_json::from_slice(&read_exact_size(
        &m.path("p.jpg@resize,w_100@format,webp@info"),
    ))
    .unwrap();
    assert_eq!(info["Format"]["value"], "webp");
    assert_eq!(info["ImageWidth"]["value"], "100");
    let webp_size = fs::metadata(m.path("p.jpg@resize,w_100@format,webp"))
        .unwrap()
        .len()
        .to_string();
    assert_eq!(info["FileSize"]["value"], webp_size.as_str());

    let hue = read_exact_size(&m.path("solid.png@average-hue"));
    assert_eq!(hue, br#"{"RGB":"0x336699"}"#);

    let q95 = read_exact_size(&m.path("p.jpg@quality,Q_95"));
    let q30 = read_exact_size(&m.path("p.jpg@quality,Q_30"));
    assert!(q30.len() < q95.len());
    let quality_of = |name: &str| -> String {
        String::from_utf8(run(
            crate::common::IDENTIFY,
            &["-format", "%Q", m.path(name).to_str().unwrap()],
        ))
        .unwrap()
    };
    assert_eq!(quality_of("p.jpg@quality,Q_30"), "30");
    // q_50 of a quality-90 source is quality 45.
    assert_eq!(quality_of("p.jpg@quality,q_50"), "45");
    let interlace = String::from_utf8(run(
        crate::common::IDENTIFY,
        &[
            "-format",
            "%[interlace]",
            m.path("p.jpg@interlace,1").to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(interlace, "JPEG");
    let baseline = String::from_utf8(run(
        crate::common::IDENTIFY,
        &[
            "-format",
            "%[interlace]",
            m.path("p.jpg@format,jpg").to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(baseline, "None");
}

fn exif_tag(path: &Path, tag: &str) -> String {
    String::from_utf8(run(
        "exiftool",
        &["-s3", "-n", &format!("-{tag}"), path.to_str().unwrap()],
    ))
    .unwrap()
    .trim()
    .to_string()
}

/// A photo-like JPEG with the sRGB ICC profile and the EXIF tags `exif` (exiftool arguments).
fn make_tagged_jpeg(path: &Path, (width, height): (u32, u32), exif: &[&str]) {
    make_jpeg(path, width, height);
    let p = path.to_str().unwrap();
    run(MAGICK, &[p, "-profile", "/usr/share/color/icc/sRGB.icc", p]);
    let mut args = vec!["-q", "-overwrite_original"];
    args.extend_from_slice(exif);
    args.push(p);
    run("exiftool", &args);
}

#[test]
fn orientation_icc_and_exif_travel_with_the_pixels() {
    let m = mount_with(|src| {
        let p = src.join("rotated.jpg");
        make_tagged_jpeg(
            &p,
            (300, 200),
            &["-n", "-Orientation=6", "-Make=imgfs-test"],
        );
    });
    // auto-orient (default 1): upright pixels, Orientation reset to 1, other EXIF kept.
    for format in ["jpg", "webp", "png", "heic"] {
        let out = m.path(&format!("rotated.jpg@format,{format}"));
        read_exact_size(&out);
        let (_, w, h) = inspect(&out);
        assert_eq!((w, h), (200, 300), "{format}");
        assert_eq!(exif_tag(&out, "Make"), "imgfs-test", "{format}");
        assert_ne!(exif_tag(&out, "Orientation"), "6", "{format}");
        assert!(
            !exif_tag(&out, "ICC_Profile:ProfileDescription").is_empty(),
            "{format} lost its ICC"
        );
    }
    // auto-orient,0 keeps the stored orientation and says so.
    let kept = m.path("rotated.jpg@auto-orient,0@format,jpg");
    assert_eq!(inspect(&kept).1, 300);
    assert_eq!(exif_tag(&kept, "Orientation"), "6");
    // Resize after orientation: l is the longer side of the upright image.
    assert_eq!(inspect(&m.path("rotated.jpg@resize,h_150")).1, 100);
}

#[test]
fn names_with_at_signs_spaces_and_unicode() {
    let m = mount_with(|src| {
        make_jpeg(&src.join("logo@2x.png"), 40, 40);
        make_jpeg(&src.join("my photo é.jpg"), 40, 30);
    });
    let (_, w, _) = inspect(&m.path("logo@2x.png@resize,w_20@format,png"));
    assert_eq!(w, 20);
    let (format, _, _) = inspect(&m.path("my photo é.jpg@format,webp"));
    assert_eq!(format, "webp");
}

#[test]
fn styles_expand_at_mount_time() {
    let mut styles = Styles::default();
    styles.add("thumb", "resize,w_50@format,webp").unwrap();
    let m = Mount::with(
        MountOptions::default(),
        Settings::default(),
        styles,
        |src| make_jpeg(&src.join("p.jpg"), 100, 60),
    );
    let (format, w, h) = inspect(&m.path("p.jpg@style,thumb"));
    assert_eq!((format.as_str(), w, h), ("webp", 50, 30));
    assert_eq!(
        errno_of(fs::metadata(m.path("p.jpg@style,nope"))),
        libc::EINVAL
    );
}

#[test]
fn tiff_with_transparency_declares_its_alpha_channel() {
    let m = mount_with(|src| make_jpeg(&src.join("p.jpg"), 80, 60));
    let out = m.path("p.jpg@circle,r_20@format,tiff");
    read_exact_size(&out);
    assert_eq!(exif_tag(&out, "ExtraSamples"), "2"); // unassociated alpha
    assert_eq!(exif_tag(&out, "SamplesPerPixel"), "4");
}

/// A HEIC over 2 MP is written as a grid of tiles (issue 4, memory); an independent decoder
/// (Debian's heif-convert) must compose it to the full size, with every tile, edge tiles
/// included, in its place, and the ICC profile and EXIF kept.
#[test]
fn a_large_heic_is_a_grid_that_other_decoders_compose() {
    let m = mount_with(|src| {
        make_tagged_jpeg(&src.join("wide.jpg"), (2600, 1500), &["-Make=imgfs-test"]);
    });
    let out = m.path("wide.jpg@format,heic@quality,Q_90");
    let bytes = read_exact_size(&out);
    assert!(
        bytes.windows(4).any(|w| w == b"grid"),
        "a 3.9 MP HEIC should be a grid item"
    );
    assert_eq!(inspect(&out), ("heic".to_string(), 2600, 1500));
    assert_eq!(exif_tag(&out, "Make"), "imgfs-test");
    assert!(!exif_tag(&out, "ICC_Profile:ProfileDescription").is_empty());

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("decoded.png");
    run(
        "heif-convert",
        &[out.to_str().unwrap(), png.to_str().unwrap()],
    );
    // PSNR against the source, which ImageMagick prints on stderr (compare exits 1 when the
    // images differ at all, so not through `run`).
    let source = m.source.join("wide.jpg");
    let compared = std::process::Command::new("/usr/bin/compare")
        .args(["-metric", "PSNR"])
        .args([source.as_os_str(), png.as_os_str()])
        .arg("null:")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&compared.stderr);
    let psnr: f64 = text
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| {
            panic!("compare printed no PSNR: {text}");
        });
    assert!(psnr > 35.0, "grid composed wrongly: PSNR {psnr} dB");
}
