//! Odd but honest sources: all eight EXIF orientations; CMYK, 16-bit, grey with alpha and
//! ICC profiles; tiny images; long names and names with `@`, spaces and Unicode. Most run the
//! library on a temporary directory and need no root; the names go through a mount.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{
    assert_mount_alive, b64, errno_at, errno_of, inspect, make_jpeg, run, Library, Mount, MAGICK,
};

const ENOENT: i32 = libc::ENOENT;
const EINVAL: i32 = libc::EINVAL;

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
