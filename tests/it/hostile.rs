//! Hostile sources and names: every one answers its errno from docs/filesystem.md ("Errors"),
//! nothing is allocated for a header that lies about its size or before it is counted, the
//! mount stays up, and the source tree is byte-for-byte the same afterwards. Odd but honest
//! sources are in `odd_sources`, many users on one mount in `users`, the root's confinement
//! in `confinement`. Needs root and `/dev/fuse`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    assert_mount_alive, errno_at, errno_of, in_own_process, inspect, make_every_format, make_jpeg,
    mounted_by, run, Mount, Watch, MAGICK,
};
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

const ENOENT: i32 = libc::ENOENT;
const EINVAL: i32 = libc::EINVAL;
const EFBIG: i32 = libc::EFBIG;
const EIO: i32 = libc::EIO;

/// sha256 of every file under `dir` (symlinks as their target text), sorted by path.
fn checksums(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.push((path, format!("-> {}", target.display())));
            } else {
                let sum = run("sha256sum", &[path.to_str().unwrap()]);
                let sum = String::from_utf8(sum).unwrap();
                let meta = fs::metadata(&path).unwrap();
                let mtime = std::os::unix::fs::MetadataExt::mtime_nsec(&meta);
                out.push((
                    path,
                    format!("{} {}", sum.split(' ').next().unwrap(), mtime),
                ));
            }
        }
    }
    out.sort();
    out
}

/// PNG with an IHDR claiming `width`×`height` and a tiny IDAT.
fn png_claiming(width: u32, height: u32, depth: u8, color: u8) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A 1×1 PNG whose colour profile (iCCP) inflates to `inflated` zero bytes: deflated, about
/// a thousandth of that.
fn png_with_profile(inflated: usize) -> Vec<u8> {
    let mut iccp = b"bomb\0\0".to_vec();
    let mut deflate = fdeflate::Compressor::new(&mut iccp).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..inflated / zeros.len() {
        deflate.write_data(&zeros).unwrap();
    }
    deflate.finish().unwrap();
    let mut png = png_claiming(1, 1, 8, 2);
    let ihdr_end = 8 + 12 + 13;
    let mut chunk = (iccp.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"iCCP");
    chunk.extend_from_slice(&iccp);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    png.splice(ihdr_end..ihdr_end, chunk);
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real JPEG whose SOF0 is patched to claim `width`×`height`.
fn jpeg_claiming(small_jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut bytes = small_jpeg.to_vec();
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG has SOF0");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// A GIF whose logical screen is `width`×`height`, with `frames` 1×1 frames.
fn gif_claiming(width: u16, height: u16, frames: usize) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&width.to_le_bytes());
    gif.extend_from_slice(&height.to_le_bytes());
    gif.extend_from_slice(&[0x80, 0, 0]); // global colour table of 2 entries
    gif.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    for _ in 0..frames {
        // Graphic control extension (10 ms), then a 1×1 image at (0,0).
        gif.extend_from_slice(&[0x21, 0xF9, 4, 0, 1, 0, 0, 0]);
        gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
        gif.extend_from_slice(&[2, 2, 0x44, 0x01, 0]);
    }
    gif.push(0x3B);
    gif
}

/// A real lossless WebP (by ImageMagick) whose VP8L header is patched to claim
/// `width`×`height` (each ≤ 16384).
fn webp_claiming(dir: &Path, width: u32, height: u32) -> Vec<u8> {
    let path = dir.join("tiny-lossless.webp");
    run(
        MAGICK,
        &[
            "-size",
            "3x2",
            "xc:red",
            "-define",
            "webp:lossless=true",
            path.to_str().unwrap(),
        ],
    );
    let mut webp = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(&webp[12..16], b"VP8L");
    let old = u32::from_le_bytes(webp[21..25].try_into().unwrap());
    let bits = (width - 1) | ((height - 1) << 14) | (old & !((1 << 28) - 1));
    webp[21..25].copy_from_slice(&bits.to_le_bytes());
    webp
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn vm_hwm_kb() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn hostile_files_and_specs_get_their_errno_and_the_mount_survives() {
    // A chain of 60 operations: valid on its own, 70 with ten more in the name.
    let long_chain = vec!["flip,h"; 60].join("@");
    let mut styles = Styles::default();
    styles.add("sixty", &long_chain).unwrap();
    let m = Mount::with(
        MountOptions::default(),
        Settings::default(),
        styles,
        |src| {
            let made = make_every_format(src);
            for (ext, path) in &made {
                let bytes = fs::read(path).unwrap();
                fs::write(src.join(format!("half.{ext}")), &bytes[..bytes.len() / 2]).unwrap();
                // Only the magic survives.
                fs::write(
                    src.join(format!("head.{ext}")),
                    &bytes[..bytes.len().min(16)],
                )
                .unwrap();
            }
            fs::write(src.join("empty.jpg"), b"").unwrap();
            fs::write(src.join("text.jpg"), b"this is not a JPEG, honest\n").unwrap();
            fs::write(src.join("random.jpg"), noise(4096, 7)).unwrap();
            let mut jpeg_noise = vec![0xFF, 0xD8, 0xFF, 0xE0];
            jpeg_noise.extend(noise(4096, 9));
            fs::write(src.join("jpeg-noise.jpg"), jpeg_noise).unwrap();
            let mut png_noise = b"\x89PNG\r\n\x1a\n".to_vec();
            png_noise.extend(noise(4096, 11));
            fs::write(src.join("png-noise.png"), png_noise).unwrap();
            // A 10×10 logical screen, then noise.
            let mut gif_noise = b"GIF89a\x0a\x00\x0a\x00".to_vec();
            gif_noise.extend(noise(4096, 13));
            fs::write(src.join("gif-noise.gif"), gif_noise).unwrap();
            let mut heif_noise = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
            heif_noise.extend(noise(4096, 15));
            fs::write(src.join("heif-noise.heic"), heif_noise).unwrap();
            fs::create_dir(src.join("dir.jpg")).unwrap();
        },
    );
    let before = checksums(&m.source);

    let mut cases: Vec<(String, i32)> = Vec::new();
    for ext in ["jpg", "png", "gif", "bmp", "tiff", "webp", "heic", "avif"] {
        cases.push((format!("half.{ext}@format,png"), EIO));
        cases.push((format!("head.{ext}@format,png"), EIO));
        cases.push((format!("head.{ext}@info"), EIO));
    }
    for name in [
        "empty.jpg@format,png",
        "empty.jpg@info",
        "text.jpg@resize,w_10",
        "random.jpg@format,webp",
        "jpeg-noise.jpg@format,png",
        "png-noise.png@format,png",
        "gif-noise.gif@format,png",
        "heif-noise.heic@format,png",
    ] {
        cases.push((name.to_string(), EIO));
    }
    for (name, errno) in [
        ("missing.jpg@format,png", ENOENT),
        ("photo.jpg.missing@format,png", ENOENT),
        ("dir.jpg@format,png", ENOENT),
        ("photo.jpg@", EINVAL),
        ("photo.jpg@@format,png", EINVAL),
        ("photo.jpg@resize", EINVAL),
        ("photo.jpg@resize,w_0", EINVAL),
        ("photo.jpg@resize,w_-1", EINVAL),
        ("photo.jpg@resize,w_16385", EINVAL),
        ("photo.jpg@resize,w_99999999999999999999999999", EINVAL),
        ("photo.jpg@resize,w_18446744073709551617", EINVAL),
        ("photo.jpg@resize,w_4294967396", EINVAL),
        ("photo.jpg@resize,w_1e3", EINVAL),
        ("photo.jpg@resize,w_0x10", EINVAL),
        ("photo.jpg@resize,w_+5", EINVAL),
        ("photo.jpg@resize,w_ 5", EINVAL),
        ("photo.jpg@resize,p_1001", EINVAL),
        ("photo.jpg@rotate,-90", EINVAL),
        ("photo.jpg@rotate,361", EINVAL),
        ("photo.jpg@rotate,4294967386", EINVAL),
        ("photo.jpg@bright,-101", EINVAL),
        ("photo.jpg@contrast,-9223372036854775809", EINVAL),
        ("photo.jpg@blur,r_-3,s_2", EINVAL),
        ("photo.jpg@crop,x_-1,y_0,w_10,h_10", EINVAL),
        ("photo.jpg@crop,x_100000,y_0", EINVAL),
        ("photo.jpg@quality,Q_0", EINVAL),
        ("photo.jpg@quality,Q_101", EINVAL),
        ("photo.jpg@format,exe", EINVAL),
        ("photo.jpg@sepia", EINVAL),
        ("photo.jpg@watermark,text_!!!not*base64!!!", EINVAL),
        ("photo.jpg@watermark,text_aGVsbG8===x", EINVAL),
        ("photo.jpg@watermark,image_%%%", EINVAL),
        ("photo.jpg@watermark,text_", EINVAL),
        ("photo.jpg@watermark,text_aGk,size_-5", EINVAL),
        ("photo.jpg@style,nonexistent", EINVAL),
        // 60 from the style + 10 = 70 > 64.
        (
            "photo.jpg@style,sixty@flip,h@flip,h@flip,h@flip,h@flip,h@flip,h@flip,h@flip,h@flip,h@flip,h",
            EINVAL,
        ),
        // The largest resize the grammar allows: refused from the plan, before any pixel.
        ("photo.jpg@resize,w_16384,h_16384,m_fixed,limit_0", EFBIG),
        ("photo.jpg@resize,p_1000,limit_0@resize,p_1000,limit_0", EFBIG),
    ] {
        cases.push((name.to_string(), errno));
    }
    let mut failures = Vec::new();
    for (name, expected) in &cases {
        let got = errno_at(&m, name);
        if got != *expected {
            failures.push(format!("{name}: errno {got}, expected {expected}"));
        }
    }
    // Hundreds of operations: FUSE passes names longer than NAME_MAX (255) to imgfs,
    // which refuses them before parsing (a crawler's names must not cost memory).
    for n in [36, 65, 100, 300] {
        let hundreds = format!("photo.jpg@{}", vec!["flip,h"; n].join("@"));
        assert!(hundreds.len() > 255);
        assert_eq!(
            errno_at(&m, &hundreds),
            libc::ENAMETOOLONG,
            "{n} operations"
        );
    }
    let err = imgfs::spec::Spec::parse(&vec!["flip,h"; 300].join("@"), &Styles::default());
    assert_eq!(err.unwrap_err().errno(), EINVAL);
    let ok = imgfs::spec::Spec::parse(&vec!["flip,h"; 64].join("@"), &Styles::default());
    assert!(ok.is_ok(), "64 operations are allowed");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Broken files are listed and read as themselves.
    assert_eq!(
        fs::read(m.path("text.jpg")).unwrap(),
        b"this is not a JPEG, honest\n"
    );
    assert_eq!(fs::read(m.path("empty.jpg")).unwrap(), b"");
    assert_mount_alive(&m, "photo.jpg@resize,w_50");
    // (w_100, not w_50: resize.rs plans w_50 of 400×267 as 49×33 — reported, not ours.)
    let (_, w, h) = inspect(&m.path("photo.jpg@resize,w_100@format,png"));
    assert_eq!((w, h), (100, 67));
    assert_eq!(
        checksums(&m.source),
        before,
        "the suite changed the source tree"
    );
    let source = m.source.clone();
    let keep = tempfile::tempdir().unwrap();
    // Keep the files past unmount (the fixture deletes its tempdir on drop).
    for (path, _) in &before {
        if fs::symlink_metadata(path).unwrap().is_file() {
            fs::hard_link(path, keep.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    drop(m);
    let after: Vec<_> = checksums(keep.path())
        .into_iter()
        .map(|(p, s)| (p.file_name().unwrap().to_owned(), s))
        .collect();
    let mut expected: Vec<_> = before
        .iter()
        .filter(|(p, _)| fs::symlink_metadata(keep.path().join(p.file_name().unwrap())).is_ok())
        .map(|(p, s)| {
            (
                p.strip_prefix(&source).unwrap().as_os_str().to_owned(),
                s.clone(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(after.len(), before.len(), "{after:?}");
    assert_eq!(after, expected, "the source changed by unmounting");
}

#[test]
fn huge_headers_are_refused_fast_without_allocating() {
    if !in_own_process("hostile::huge_headers_are_refused_fast_without_allocating") {
        return;
    }
    let m = Mount::new_with_files(|src| {
        let small = src.join("small.jpg");
        make_jpeg(&small, 64, 48);
        let small = fs::read(&small).unwrap();
        fs::write(src.join("side.png"), png_claiming(60000, 60000, 8, 6)).unwrap();
        fs::write(src.join("pixels.png"), png_claiming(20000, 20000, 8, 6)).unwrap();
        fs::write(src.join("deep.png"), png_claiming(29000, 29000, 16, 6)).unwrap();
        fs::write(src.join("wide.png"), png_claiming(4_000_000_000, 1, 8, 2)).unwrap();
        fs::write(src.join("side.jpg"), jpeg_claiming(&small, 60000, 60000)).unwrap();
        fs::write(src.join("pixels.jpg"), jpeg_claiming(&small, 20000, 20000)).unwrap();
        fs::write(src.join("side.gif"), gif_claiming(60000, 60000, 1)).unwrap();
        fs::write(src.join("pixels.gif"), gif_claiming(20000, 20000, 1)).unwrap();
        // 4000×4000 × 20 frames = 320 M px > 250 M px, each frame alone 16 M px.
        fs::write(src.join("frames.gif"), gif_claiming(4000, 4000, 20)).unwrap();
        // VP8L sides stop at 16384 (and image-webp 0.2.4 reads 16384 as 0): 16383² > 250 M px.
        fs::write(src.join("pixels.webp"), webp_claiming(src, 16383, 16383)).unwrap();
        // Hostile review of 2026-12-03: 1 GiB of colour profile in a PNG of about 1 MB.
        let profile = png_with_profile(1 << 30);
        assert!(profile.len() < 8 << 20, "{} bytes", profile.len());
        fs::write(src.join("profile.png"), profile).unwrap();
        fs::write(src.join("ok.jpg"), &small).unwrap();
    });
    let hwm_before = vm_hwm_kb();
    let started = Instant::now();
    let mut failures = Vec::new();
    for name in [
        "side.png",
        "pixels.png",
        "deep.png",
        "wide.png",
        "side.jpg",
        "pixels.jpg",
        "side.gif",
        "pixels.gif",
        "frames.gif",
        "pixels.webp",
        "profile.png",
    ] {
        for spec in [
            "format,png",
            "resize,w_100",
            "info",
            "format,gif",
            "rotate,90",
        ] {
            let variant = format!("{name}@{spec}");
            let t = Instant::now();
            let got = errno_at(&m, &variant);
            if got != EFBIG {
                failures.push(format!("{variant}: errno {got}, expected EFBIG"));
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{variant}: took {:?}",
                t.elapsed()
            );
        }
    }
    let hwm_after = vm_hwm_kb();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Each refused source would need ≥ 1.2 GB decoded; the whole run may grow the process
    // by a few MB of bookkeeping.
    assert!(
        hwm_after - hwm_before < 100 * 1024,
        "peak RSS grew from {hwm_before} kB to {hwm_after} kB"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_mount_alive(&m, "ok.jpg@resize,w_20");
}

/// Hostile review of 2026-12-03: a conversion read its source and watermark files (up to
/// 4 × 20 MB) before the memory gate counted a byte of them.
#[test]
fn a_conversion_reads_nothing_before_its_bytes_are_counted() {
    let options = MountOptions {
        convert_memory: Some(4 << 20),
        ..MountOptions::default()
    };
    let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
        make_jpeg(&src.join("photo.jpg"), 600, 400)
    });
    let mut watch = Watch::new(&m.source.join("photo.jpg"));
    let everything = m.memory_gate.reserve(4 << 20);
    let reader = {
        let path = m.path("photo.jpg@resize,w_10");
        std::thread::spawn(move || fs::read(path))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        watch.events(),
        0,
        "the source was opened before it was counted"
    );
    drop(everything);
    let out = reader.join().unwrap().unwrap();
    assert_eq!(image::load_from_memory(&out).unwrap().width(), 10);
    assert!(watch.events() > 0);
}

/// A 10-bit HEIF decodes through planes of two bytes a sample, and was counted as an 8-bit
/// one (a 10-bit 4:4:4 HEIC of 4.3 MP peaked 25.6 MB above its 8-bit twin): the gate
/// admitted it for less than it holds.
#[test]
fn a_deep_heif_is_counted_with_its_two_byte_planes() {
    use imgfs::pipeline::codec;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (png16, png8, deep, flat) = (
        path("16.png"),
        path("8.png"),
        path("deep.heic"),
        path("flat.heic"),
    );
    run(
        MAGICK,
        &[
            "-size",
            "320x240",
            "plasma:red-blue",
            "-depth",
            "16",
            &png16,
        ],
    );
    run(MAGICK, &[&png16, "-depth", "8", &png8]);
    run(
        "heif-enc",
        &["-p", "chroma=444", "-b", "10", "-o", &deep, &png16],
    );
    run("heif-enc", &["-p", "chroma=444", "-o", &flat, &png8]);
    let cost = |file: &str| {
        let bytes = fs::read(file).unwrap();
        let header = codec::probe(&bytes).unwrap();
        let cost = codec::decode_cost(&bytes, &header, &Default::default());
        (header.deep, cost.bytes)
    };
    let frame = 320 * 240 * 4;
    assert_eq!(cost(&flat), (false, frame * 5 / 2));
    assert_eq!(cost(&deep), (true, frame * 4));
}

/// A file name is anyone's to choose, and a mount logs the name of a file it cannot convert:
/// a newline in the name must not start a line that reads as the mount's own.
#[test]
fn a_name_with_a_newline_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let (src, mnt, log) = (
        dir.path().join("src"),
        dir.path().join("mnt"),
        dir.path().join("mount.log"),
    );
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    let forged = "2026-12-03T00:00:00.000000Z ERROR forged";
    let name = format!("x.jpg\n{forged}.jpg");
    fs::write(src.join(&name), b"not an image").unwrap();
    let mut binary = Command::new(crate::common::bin());
    binary.stderr(fs::File::create(&log).unwrap());
    let mut child = mounted_by(binary, &src, &mnt, &[]);
    let read = fs::read(mnt.join(format!("{name}@resize,w_10")));
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = child.wait();
    assert_eq!(errno_of(read), EIO, "not an image");
    let text = fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("x.jpg"))
        .unwrap_or_else(|| panic!("no log line for the file: {text}"));
    assert!(
        line.contains(&format!("x.jpg\\n{forged}.jpg@resize,w_10")),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with(forged)), "{text}");
}
