//! Hostile sources and names: every one answers its errno from docs/filesystem.md ("Errors"),
//! nothing is allocated for a header that lies about its size, the mount stays up, and the
//! source tree is byte-for-byte the same afterwards. Also the security rules of "Names":
//! symlinks out of the root, permissions with allow_other, watermark paths.
//!
//! The tests of odd sources (all eight EXIF orientations; CMYK, 16-bit, grey with alpha and
//! ICC profiles; tiny images) run the library on a temporary directory and need no root;
//! the others mount, so they need root and `/dev/fuse`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    errno_of, in_own_process, inspect, make_every_format, make_jpeg, run, Library, Mount, MAGICK,
};
use base64::Engine;
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

const ENOENT: i32 = libc::ENOENT;
const EINVAL: i32 = libc::EINVAL;
const EFBIG: i32 = libc::EFBIG;
const EIO: i32 = libc::EIO;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

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

/// The errno of stat, open and read of `name` (all three must agree), 0 for success.
fn errno_at(m: &Mount, name: &str) -> i32 {
    let stat = errno_of(fs::metadata(m.path(name)));
    let read = errno_of(fs::read(m.path(name)));
    assert_eq!(stat, read, "{name}: stat and read disagree");
    stat
}

fn assert_mount_alive(m: &Mount, good: &str) {
    let bytes = fs::read(m.path(good)).expect("a good variant still reads");
    assert_eq!(
        bytes.len() as u64,
        fs::metadata(m.path(good)).unwrap().len()
    );
    assert!(!bytes.is_empty());
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

/// The upright picture: red top-left quadrant block, green top-right, blue elsewhere.
fn make_upright(path: &Path) {
    run(
        MAGICK,
        &[
            "-size",
            "64x32",
            "xc:blue",
            "-fill",
            "red",
            "-draw",
            "rectangle 0,0 15,15",
            "-fill",
            "lime",
            "-draw",
            "rectangle 48,0 63,15",
            "-quality",
            "95",
            path.to_str().unwrap(),
        ],
    );
}

/// The colour at (x, y) as ImageMagick reads it.
fn pixel(path: &Path, x: u32, y: u32) -> (u8, u8, u8) {
    let out = run(
        MAGICK,
        &[
            path.to_str().unwrap(),
            "-format",
            &format!("%[fx:int(255*p{{{x},{y}}}.r)],%[fx:int(255*p{{{x},{y}}}.g)],%[fx:int(255*p{{{x},{y}}}.b)]"),
            "info:",
        ],
    );
    let text = String::from_utf8(out).unwrap();
    let v: Vec<u8> = text.trim().split(',').map(|s| s.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

fn is_colour(c: (u8, u8, u8), want: (u8, u8, u8)) -> bool {
    c.0.abs_diff(want.0) < 60 && c.1.abs_diff(want.1) < 60 && c.2.abs_diff(want.2) < 60
}

#[test]
fn all_eight_exif_orientations_end_upright() {
    // Stored pixels = the inverse of what orientation N does on display.
    let inverse: [&[&str]; 8] = [
        &[],
        &["-flop"],
        &["-rotate", "180"],
        &["-flip"],
        &["-transpose"],
        &["-rotate", "270"],
        &["-transverse"],
        &["-rotate", "90"],
    ];
    let m = Library::new_with_files(|src| {
        let upright = src.join("upright.png");
        make_upright(&upright);
        for (i, ops) in inverse.iter().enumerate() {
            let n = i + 1;
            let out = src.join(format!("o{n}.jpg"));
            let mut args = vec![upright.to_str().unwrap()];
            args.extend_from_slice(ops);
            args.extend_from_slice(&["-quality", "95", out.to_str().unwrap()]);
            run(MAGICK, &args);
            run(
                "exiftool",
                &[
                    "-q",
                    "-overwrite_original",
                    &format!("-Orientation={n}"),
                    "-n",
                    out.to_str().unwrap(),
                ],
            );
        }
        fs::remove_file(&upright).unwrap();
    });
    let mut failures = Vec::new();
    for n in 1..=8u32 {
        let stored = inspect(&m.source.join(format!("o{n}.jpg")));
        let swapped = n >= 5;
        assert_eq!(
            (stored.1, stored.2),
            if swapped { (32, 64) } else { (64, 32) }
        );
        for spec in [
            "format,png",
            "resize,w_32@format,png",
            "auto-orient,1@format,png",
        ] {
            let name = format!("o{n}.jpg@{spec}");
            let path = m.path(&name);
            let (_, w, h) = inspect(&path);
            let scale = if spec.starts_with("resize") { 2 } else { 1 };
            if (w, h) != (64 / scale, 32 / scale) {
                failures.push(format!("{name}: {w}x{h}"));
                continue;
            }
            let tl = pixel(&path, 4 / scale, 4 / scale);
            let tr = pixel(&path, (64 - 4) / scale, 4 / scale);
            let bl = pixel(&path, 4 / scale, (32 - 4) / scale);
            if !is_colour(tl, (255, 0, 0))
                || !is_colour(tr, (0, 255, 0))
                || !is_colour(bl, (0, 0, 255))
            {
                failures.push(format!("{name}: corners {tl:?} {tr:?} {bl:?}"));
            }
        }
        // auto-orient,0 keeps the stored layout.
        let (_, w, h) = inspect(&m.path(&format!("o{n}.jpg@auto-orient,0@format,png")));
        assert_eq!((w, h), (stored.1, stored.2), "o{n}.jpg@auto-orient,0");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Mean of each channel in 0..=255, by ImageMagick.
fn mean_rgb(path: &Path) -> (f64, f64, f64) {
    let out = run(
        MAGICK,
        &[
            path.to_str().unwrap(),
            "-colorspace",
            "sRGB",
            "-format",
            "%[fx:255*mean.r],%[fx:255*mean.g],%[fx:255*mean.b]",
            "info:",
        ],
    );
    let text = String::from_utf8(out).unwrap();
    let v: Vec<f64> = text.trim().split(',').map(|s| s.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

#[test]
fn cmyk_16_bit_grey_alpha_and_icc_sources_convert() {
    let icc = Path::new("/usr/share/color/icc/sRGB.icc");
    let m = Library::new_with_files(|src| {
        let photo = src.join("photo.jpg");
        make_jpeg(&photo, 200, 120);
        let p = photo.to_str().unwrap();
        let at = |n: &str| src.join(n).to_str().unwrap().to_string();
        run(MAGICK, &[p, "-colorspace", "CMYK", &at("cmyk.jpg")]);
        run(
            MAGICK,
            &[p, "-depth", "16", &format!("PNG48:{}", at("deep.png"))],
        );
        run(
            MAGICK,
            &[
                p,
                "-alpha",
                "set",
                "-channel",
                "A",
                "-evaluate",
                "set",
                "50%",
                "+channel",
                "-depth",
                "16",
                &format!("PNG64:{}", at("deep-alpha.png")),
            ],
        );
        run(
            MAGICK,
            &[
                p,
                "-colorspace",
                "Gray",
                "-alpha",
                "set",
                "-channel",
                "A",
                "-evaluate",
                "set",
                "60%",
                "+channel",
                "-define",
                "png:color-type=4",
                &at("grey-alpha.png"),
            ],
        );
        run(
            MAGICK,
            &[
                p,
                "-colorspace",
                "Gray",
                "-define",
                "png:color-type=0",
                "-depth",
                "16",
                &at("grey16.png"),
            ],
        );
        run(MAGICK, &[p, "-colorspace", "Gray", &at("grey.jpg")]);
        if icc.exists() {
            run(
                MAGICK,
                &[p, "-profile", icc.to_str().unwrap(), &at("icc.jpg")],
            );
            run(
                MAGICK,
                &[p, "-profile", icc.to_str().unwrap(), &at("icc.png")],
            );
        }
    });
    // Sanity of the fixtures, by independent tools.
    let ident = |n: &str, f: &str| {
        String::from_utf8(run(
            crate::common::IDENTIFY,
            &["-format", f, m.source.join(n).to_str().unwrap()],
        ))
        .unwrap()
    };
    assert_eq!(ident("cmyk.jpg", "%[colorspace]"), "CMYK");
    assert_eq!(ident("deep.png", "%[depth]"), "16");
    assert!(
        ident("grey-alpha.png", "%[channels]").starts_with("gray"),
        "{}",
        ident("grey-alpha.png", "%[channels]")
    );

    let reference = mean_rgb(&m.source.join("photo.jpg"));
    let mut failures = Vec::new();
    for name in [
        "cmyk.jpg",
        "deep.png",
        "deep-alpha.png",
        "grey-alpha.png",
        "grey16.png",
        "grey.jpg",
    ] {
        for spec in [
            "format,png",
            "resize,w_100",
            "format,webp",
            "format,jpg",
            "rotate,90@format,heic",
        ] {
            let variant = format!("{name}@{spec}");
            match m.convert(&variant) {
                Ok(bytes) if !bytes.is_empty() => {
                    let (_, w, h) = inspect(&m.write(&bytes));
                    let want = match spec {
                        "resize,w_100" => (100, 60),
                        s if s.starts_with("rotate") => (120, 200),
                        _ => (200, 120),
                    };
                    if (w, h) != want {
                        failures.push(format!("{variant}: {w}x{h}, expected {want:?}"));
                    }
                }
                other => failures.push(format!("{variant}: {:?}", other.map(|b| b.len()))),
            }
        }
    }
    // CMYK comes out in the source's colours (not inverted, not channel-swapped).
    let cmyk = mean_rgb(&m.path("cmyk.jpg@format,png"));
    let close = |a: (f64, f64, f64), b: (f64, f64, f64)| {
        (a.0 - b.0).abs() < 25.0 && (a.1 - b.1).abs() < 25.0 && (a.2 - b.2).abs() < 25.0
    };
    if !close(cmyk, reference) {
        failures.push(format!(
            "cmyk.jpg@format,png: mean {cmyk:?}, source {reference:?}"
        ));
    }
    let deep = mean_rgb(&m.path("deep.png@format,png"));
    if !close(deep, reference) {
        failures.push(format!(
            "deep.png@format,png: mean {deep:?}, source {reference:?}"
        ));
    }
    // The ICC profile travels into every format that can carry one.
    if icc.exists() {
        let profile = fs::read(icc).unwrap();
        for variant in [
            "icc.jpg@resize,w_100",
            "icc.jpg@format,png",
            "icc.jpg@format,webp",
            "icc.png@format,jpg",
            "icc.png@resize,w_100",
        ] {
            let out = Command::new("exiftool")
                .args(["-b", "-ICC_Profile", m.path(variant).to_str().unwrap()])
                .output()
                .unwrap();
            if out.stdout != profile {
                failures.push(format!(
                    "{variant}: ICC profile of {} bytes, expected {}",
                    out.stdout.len(),
                    profile.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tiny_images_survive_every_operation() {
    let m = Library::new_with_files(|src| {
        for (name, size) in [("1x1.png", "1x1"), ("2x1.png", "2x1"), ("1x3.gif", "1x3")] {
            run(
                MAGICK,
                &["-size", size, "xc:red", src.join(name).to_str().unwrap()],
            );
        }
        run(
            MAGICK,
            &[
                "-size",
                "1x1",
                "xc:red",
                src.join("1x1.jpg").to_str().unwrap(),
            ],
        );
        run(
            MAGICK,
            &[
                "-size",
                "1x1",
                "xc:#ff000080",
                src.join("1x1a.png").to_str().unwrap(),
            ],
        );
        fs::write(
            src.join("mark.png"),
            fs::read(src.join("1x1a.png")).unwrap(),
        )
        .unwrap();
    });
    let mark = b64("mark.png");
    let text = b64("imgfs");
    let specs = [
        "resize,w_1".to_string(),
        "resize,w_100,h_100,m_pad".into(),
        "resize,w_50,m_fill".into(),
        "resize,l_3,limit_0".into(),
        "resize,p_1".into(),
        "resize,w_7,h_9,m_fixed,limit_0".into(),
        "crop,w_1,h_1".into(),
        "crop,x_0,y_0,g_se".into(),
        "crop,w_5,h_5,g_center".into(),
        "indexcrop,x_1,i_0".into(),
        "indexcrop,y_1,i_5".into(),
        "circle,r_1".into(),
        "circle,r_4096".into(),
        "rounded-corners,r_1".into(),
        "rounded-corners,r_4096".into(),
        "rotate,45".into(),
        "rotate,90".into(),
        "rotate,359".into(),
        "flip,hv".into(),
        "blur,r_50,s_50".into(),
        "bright,100".into(),
        "contrast,-100".into(),
        "sharpen,399".into(),
        "average-hue".into(),
        "info".into(),
        "resize,w_1@info".into(),
        format!("watermark,text_{text}"),
        format!("watermark,text_{text},size_1000,shadow_100,rotate_90,fill_1"),
        format!("watermark,image_{mark},t_50,g_center"),
        format!("watermark,image_{mark},P_100"),
        "format,heic".into(),
        "format,avif".into(),
        "format,gif".into(),
        "format,bmp".into(),
        "format,tiff".into(),
        "format,webp@quality,Q_1".into(),
        "format,jpg@interlace,1@quality,q_1".into(),
    ];
    let mut failures = Vec::new();
    for source in ["1x1.png", "2x1.png", "1x3.gif", "1x1.jpg", "1x1a.png"] {
        for spec in &specs {
            let name = format!("{source}@{spec}");
            match m.convert(&name) {
                Ok(b) if !b.is_empty() => {}
                Ok(_) => failures.push(format!("{name}: empty")),
                Err(EINVAL) if spec.contains("P_") => {}
                Err(errno) => failures.push(format!("{name}: errno {errno}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn long_names_and_names_with_at_spaces_and_unicode() {
    let long = format!("{}.jpg", "n".repeat(251)); // 255 bytes
    let long_source = format!("{}.jpg", "s".repeat(236)); // 240 + "@format,png" = 251
    let unicode = "über photo@2x Ωμέγα 写真.jpg";
    let m = Mount::new_with_files(|src| {
        make_jpeg(&src.join("base.jpg"), 60, 40);
        for n in [
            long.as_str(),
            long_source.as_str(),
            unicode,
            "@lead.jpg",
            "a b@c d.jpg",
        ] {
            fs::copy(src.join("base.jpg"), src.join(n)).unwrap();
        }
    });
    let base = fs::read(m.source.join("base.jpg")).unwrap();
    assert_eq!(long.len(), 255);
    assert_eq!(fs::read(m.path(&long)).unwrap(), base);
    let names: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for n in [
        long.as_str(),
        long_source.as_str(),
        unicode,
        "@lead.jpg",
        "a b@c d.jpg",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} not listed");
    }
    // A variant of a 255-byte name is longer than NAME_MAX: FUSE passes it on, imgfs
    // answers as every Linux file system does.
    let too_long = format!("{long}@format,png");
    assert_eq!(errno_at(&m, &too_long), libc::ENAMETOOLONG);
    let variant = format!("{long_source}@format,png");
    assert_eq!(variant.len(), 251);
    assert_eq!(inspect(&m.path(&variant)), ("png".into(), 60, 40));
    for (name, dims) in [
        (format!("{unicode}@resize,w_30"), (30, 20)),
        ("@lead.jpg@resize,w_30".to_string(), (30, 20)),
        ("a b@c d.jpg@format,png".to_string(), (60, 40)),
    ] {
        let (_, w, h) = inspect(&m.path(&name));
        assert_eq!((w, h), dims, "{name}");
    }
    // `a b@c d.jpg` has no source `a b`: only the longest real prefix counts.
    assert_eq!(errno_at(&m, "a b@format,png"), ENOENT);
    // Non-UTF-8 bytes in a spec are not a valid operation.
    use std::os::unix::ffi::OsStrExt;
    let raw = std::ffi::OsStr::from_bytes(b"base.jpg@format,\xff\xfe");
    assert_eq!(errno_of(fs::metadata(m.mnt.join(raw))), EINVAL);
    assert_mount_alive(&m, "base.jpg@resize,w_10");
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

/// `command` (the binary, or a wrapper running it) mounting `src` on `mnt` with `options`,
/// once the mount is there.
fn mounted_by(
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

// ---------------------------------------------------------------------------------------
// Security (docs/filesystem.md, "Names"; docs/operations.md, watermark `image_`).

/// inotify watch for opens and reads of `path`; `events()` drains what happened since.
struct Watch(std::fs::File);

impl Watch {
    fn new(path: &Path) -> Watch {
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

    fn events(&mut self) -> usize {
        let mut buf = [0u8; 4096];
        match self.0.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("inotify: {e}"),
        }
    }
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

/// A mount others may use (`allow_other`, the source's parent open to all), filled by `fill`.
fn shared_mount(mut options: MountOptions, fill: impl FnOnce(&Path)) -> Mount {
    options.options.push("allow_other".into());
    Mount::with(options, Settings::default(), Styles::default(), |src| {
        fs::set_permissions(src.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
        fill(src)
    })
}

fn as_nobody(path: &Path) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .unwrap()
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
        let out = as_nobody(&m.path(name));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, fs::read(m.path(name)).unwrap(), "{name}");
    }
    for name in [
        "private.jpg",
        "private.jpg@format,png",
        "private.jpg@resize,w_10",
        "private.jpg@info",
        "closed/in.jpg",
        "closed/in.jpg@format,png",
    ] {
        // Root converts it first, so a cached variant is what nobody would get.
        assert!(!fs::read(m.path(name)).unwrap().is_empty());
        let out = as_nobody(&m.path(name));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{name} readable by nobody"
        );
        assert!(stderr.contains("Permission denied"), "{name}: {stderr}");
    }
    let private = fs::metadata(m.path("private.jpg@format,png")).unwrap();
    assert_eq!(private.permissions().mode() & 0o777, 0o400);
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

/// Second hostile review of 2026-12-03: every open file or directory holds one of the
/// mount's descriptors, and one user could hold them all, so the mount could then open
/// nothing for anyone. With a descriptor limit of 200, the mount keeps 150 handles, 75 a
/// user: the 76th open of one user is ENFILE, another user still opens, and a close frees.
#[test]
fn open_files_are_bounded_per_user() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (src, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    fs::write(src.join("a.txt"), b"a\n").unwrap();
    let mut limited = Command::new("prlimit");
    limited.arg("--nofile=200:200").arg(crate::common::bin());
    let mut child = mounted_by(limited, &src, &mnt, &["-o", "allow_other"]);
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
