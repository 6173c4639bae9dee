//! Every operation of docs/operations.md, run by the library (`pipeline::convert`) on a
//! temporary source directory, so no root is needed: a conformance table of (variant,
//! expected output or errno), pixel checks decoded by ImageMagick, and animated GIF/WebP
//! round trips counted in frames by identify and webpmux.
//!
//! One test, `a_real_mount_gives_the_library_bytes`, needs root and `/dev/fuse`: a few rows
//! of each operation family go through a real mount too, which must answer the same bytes
//! or errno (so the table's verdicts hold for the kernel path).

use std::fs;
use std::path::Path;

use crate::common::{
    convert_name, errno_of, inspect, make_jpeg, run, Library, Mount, IDENTIFY, MAGICK,
};
use image::RgbaImage;
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::{encode_base64 as b64, Styles};

const EINVAL: i32 = libc::EINVAL;

/// What a row of the table expects from its variant.
#[derive(Debug)]
enum Expect {
    /// An image of these dimensions (any format).
    Dims(u32, u32),
    /// An image in this format (as `inspect` names it) and of these dimensions.
    Fmt(&'static str, u32, u32),
    /// GIF or WebP (or a still): format, canvas, frame count, every frame's delay in ms.
    Frames(&'static str, u32, u32, usize, u32),
    /// The JSON of `info`: width, height, frame count.
    Info(u32, u32, u32),
    /// The JSON of `average-hue`.
    Hue(&'static str),
    /// stat and read both fail with this errno.
    Errno(i32),
}
use Expect::*;

/// `{NAME}` in a row's name stands for the URL-safe Base64 of a text (watermarks).
const BASE64: [(&str, &str); 9] = [
    ("{TEXT}", "imgfs 图片"),
    ("{LOGO}", "marks/logo.png"),
    ("{LOGO30}", "marks/logo.png?x-oss-process=image/resize,P_30"),
    ("{LOGO0}", "marks/logo.png?x-oss-process=image/resize,P_0"),
    ("{FONT}", "wqy-microhei"),
    ("{ARIAL}", "arial"),
    ("{OUT}", "../outside.png"),
    ("{NONE}", "marks/none.png"),
    // 65 characters: one more than OSS allows.
    (
        "{LONG}",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ),
];

/// The sources besides the photos, made in the source directory ($0) by independent tools.
const SOURCES: &str = r#"set -e; cd "$0"; M=/usr/bin/convert
exiftool -q -overwrite_original -n -Orientation=6 turned.jpg
$M -size 200x100 gradient:red-blue -depth 8 wide.png
$M -size 400x200 gradient:white-black -depth 8 w400x200.png
$M -size 64x64 'xc:#3366CC' solid.png
# Quadrants: red | lime over blue | yellow.
$M -size 50x30 xc:red xc:lime +append '(' xc:blue xc:yellow +append ')' -append +repage quad.png
mkdir marks; $M -size 40x20 xc:lime marks/logo.png
echo 'not an image' > outside.txt
# Four 60x40 frames, red, lime, blue, yellow, 20 cs each; the same as WebP by gif2webp.
$M -delay 20 -size 60x40 xc:red xc:lime xc:blue xc:yellow -loop 0 anim.gif
gif2webp -quiet anim.gif -o anim.webp
# Optimised: frames 2 and 3 are 16x16 patches at offsets (disposal and sub-rectangles).
$M -size 60x40 -delay 20 xc:white '(' xc:white -fill red -draw 'rectangle 5,5 20,20' ')' \
   '(' xc:white -fill red -draw 'rectangle 25,5 40,20' ')' -layers Optimize patches.gif
"#;

fn styles() -> Styles {
    let mut styles = Styles::default();
    styles.add("thumb", "resize,w_100@format,png").unwrap();
    styles.add("round", "circle,r_50").unwrap();
    styles
}

/// Writes the table's sources into `src`.
fn make_sources(src: &Path) {
    // docs/operations.md's 400×267 photo, and the same stored turned (EXIF Orientation 6).
    make_jpeg(&src.join("photo.jpg"), 400, 267);
    make_jpeg(&src.join("turned.jpg"), 400, 267);
    run("sh", &["-c", SOURCES, src.to_str().unwrap()]);
}

/// The table's sources, converted by the library.
fn library() -> Library {
    Library::new(styles(), make_sources)
}

/// (variant name, what it must give); `{NAME}`s are expanded from BASE64 first.
#[rustfmt::skip]
const ROWS: &[(&str, Expect)] = &[
    // resize: the worked examples, every mode, l/s/p, limit, precedence.
    ("wide.png@resize,m_lfit,w_150,h_80", Fmt("png", 150, 75)),
    ("wide.png@resize,m_mfit,w_150,h_80", Dims(160, 80)),
    ("wide.png@resize,m_fill,w_150,h_80", Dims(150, 80)),
    ("wide.png@resize,m_pad,w_150,h_80", Dims(150, 80)),
    ("wide.png@resize,m_pad,w_150,h_80,color_00FF00", Dims(150, 80)),
    ("wide.png@resize,m_fixed,w_150,h_80", Dims(150, 80)),
    ("wide.png@resize,w_100", Dims(100, 50)),
    ("wide.png@resize,h_50", Dims(100, 50)),
    ("wide.png@resize,m_fixed,w_100", Dims(100, 50)),
    ("wide.png@resize,m_mfit,h_20", Dims(40, 20)),
    ("wide.png@resize,m_fill,w_50", Dims(50, 50)),
    ("wide.png@resize,m_pad,h_50", Dims(50, 50)),
    ("wide.png@resize,l_100", Dims(100, 50)),
    ("wide.png@resize,s_50", Dims(100, 50)),
    ("wide.png@resize,l_150,s_50", Dims(100, 50)),
    ("wide.png@resize,p_50", Dims(100, 50)),
    ("wide.png@resize,w_50,l_150", Dims(50, 25)),
    ("wide.png@resize,l_50,p_10", Dims(50, 25)),
    ("wide.png@resize,w_400", Dims(200, 100)),
    ("wide.png@resize,w_400,limit_0", Dims(400, 200)),
    ("wide.png@resize,p_200", Dims(200, 100)),
    ("wide.png@resize,p_200,limit_0", Dims(400, 200)),
    ("photo.jpg@resize,l_200", Fmt("jpeg", 200, 134)),
    ("photo.jpg@resize,w_200@rotate,90", Dims(134, 200)),
    // crop: nine gravities with x_10,y_5 (offsets move right/down from the origin, then clip).
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_nw", Dims(100, 50)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_north", Dims(100, 50)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_ne", Dims(90, 50)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_west", Dims(100, 50)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_center", Dims(100, 50)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_east", Dims(90, 50)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_sw", Dims(100, 45)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_south", Dims(100, 45)),
    ("photo.jpg@crop,w_100,h_50,x_10,y_5,g_se", Dims(90, 45)),
    ("photo.jpg@crop,w_100,h_100,x_350,y_200", Dims(50, 67)),
    ("photo.jpg@crop,x_100,y_67", Dims(300, 200)),
    ("photo.jpg@crop,w_50", Dims(50, 267)),
    ("photo.jpg@crop,w_1000,h_1000,g_center", Dims(400, 267)),
    ("photo.jpg@crop,w_10,h_10,x_399,y_266", Dims(1, 1)),
    ("photo.jpg@crop,w_10,h_10,x_1,g_se", Dims(9, 10)),
    // indexcrop: slices along x or y, the narrower last one, past the end, y wins.
    ("photo.jpg@indexcrop,x_150,i_0", Dims(150, 267)),
    ("photo.jpg@indexcrop,x_150,i_2", Dims(100, 267)),
    ("photo.jpg@indexcrop,x_150,i_3", Dims(400, 267)),
    ("photo.jpg@indexcrop,y_100", Dims(400, 100)),
    ("photo.jpg@indexcrop,y_100,i_2", Dims(400, 67)),
    ("photo.jpg@indexcrop,y_100,i_10", Dims(400, 267)),
    ("photo.jpg@indexcrop,x_100,y_100,i_2", Dims(400, 67)),
    // circle: 2r+1, r capped at (short-1)/2.
    ("photo.jpg@circle,r_100", Fmt("jpeg", 201, 201)),
    ("photo.jpg@circle,r_100@format,png", Fmt("png", 201, 201)),
    ("photo.jpg@circle,r_4096", Dims(267, 267)),
    ("w400x200.png@circle,r_100", Dims(199, 199)),
    ("photo.jpg@circle,r_1", Dims(3, 3)),
    // rounded-corners: size unchanged.
    ("photo.jpg@rounded-corners,r_30", Fmt("jpeg", 400, 267)),
    ("photo.jpg@rounded-corners,r_4096", Dims(400, 267)),
    // rotate: right angles swap sides, others grow the canvas.
    ("photo.jpg@rotate,0", Dims(400, 267)),
    ("photo.jpg@rotate,90", Dims(267, 400)),
    ("photo.jpg@rotate,180", Dims(400, 267)),
    ("photo.jpg@rotate,270", Dims(267, 400)),
    ("photo.jpg@rotate,360", Dims(400, 267)),
    ("photo.jpg@rotate,45", Dims(472, 472)),
    ("wide.png@rotate,30", Dims(224, 187)),
    // flip.
    ("photo.jpg@flip,h", Dims(400, 267)),
    ("photo.jpg@flip,v", Dims(400, 267)),
    ("photo.jpg@flip,hv", Dims(400, 267)),
    // blur, bright, contrast, sharpen.
    ("photo.jpg@blur,r_3,s_2", Dims(400, 267)),
    ("photo.jpg@blur,r_50,s_50", Dims(400, 267)),
    ("photo.jpg@bright,50", Dims(400, 267)),
    ("photo.jpg@bright,-100", Dims(400, 267)),
    ("photo.jpg@contrast,-20", Dims(400, 267)),
    ("photo.jpg@contrast,100", Dims(400, 267)),
    ("photo.jpg@sharpen,50", Dims(400, 267)),
    ("photo.jpg@sharpen,399", Dims(400, 267)),
    // info and average-hue.
    ("photo.jpg@info", Info(400, 267, 1)),
    ("photo.jpg@resize,w_100@format,png@info", Info(100, 67, 1)),
    ("solid.png@average-hue", Hue("0x3366CC")),
    ("solid.png@resize,w_10@average-hue", Hue("0x3366CC")),
    // style.
    ("photo.jpg@style,thumb", Fmt("png", 100, 67)),
    ("photo.jpg@resize,w_200@style,round", Dims(101, 101)),
    // format, quality, interlace: settings of the final encode, anywhere in the chain.
    ("photo.jpg@format,jpg", Fmt("jpeg", 400, 267)),
    ("photo.jpg@format,jpeg", Fmt("jpeg", 400, 267)),
    ("photo.jpg@format,png", Fmt("png", 400, 267)),
    ("photo.jpg@format,webp", Fmt("webp", 400, 267)),
    ("photo.jpg@format,bmp", Fmt("bmp", 400, 267)),
    ("photo.jpg@format,gif", Fmt("gif", 400, 267)),
    ("photo.jpg@format,tiff", Fmt("tiff", 400, 267)),
    ("photo.jpg@format,heic@resize,w_100", Fmt("heic", 100, 67)),
    ("photo.jpg@format,avif@resize,w_100", Fmt("avif", 100, 67)),
    ("wide.png@format,jpg", Fmt("jpeg", 200, 100)),
    ("photo.jpg@quality,Q_50", Fmt("jpeg", 400, 267)),
    ("photo.jpg@quality,q_50", Fmt("jpeg", 400, 267)),
    ("photo.jpg@quality,Q_40@format,webp", Fmt("webp", 400, 267)),
    ("photo.jpg@quality,q_80,Q_40", Fmt("jpeg", 400, 267)),
    ("photo.jpg@interlace,1", Fmt("jpeg", 400, 267)),
    ("photo.jpg@interlace,0", Fmt("jpeg", 400, 267)),
    // auto-orient (turned.jpg is stored 400×267 with EXIF Orientation 6).
    ("turned.jpg@auto-orient,1", Dims(267, 400)),
    ("turned.jpg@auto-orient,0", Dims(400, 267)),
    ("turned.jpg@resize,w_100", Dims(100, 150)),
    ("turned.jpg@auto-orient,0@resize,w_100", Dims(100, 67)),
    ("turned.jpg@resize,w_100@auto-orient,1", Dims(100, 150)),
    // watermark: text and image marks (any key), a missing mark image.
    ("photo.jpg@watermark,text_{TEXT}", Fmt("jpeg", 400, 267)),
    ("photo.jpg@watermark,text_{TEXT},type_{FONT},size_30,color_FF0000,shadow_50,rotate_30,t_50", Dims(400, 267)),
    ("photo.jpg@watermark,text_{TEXT},fill_1,g_center,x_5,y_5,voffset_10", Dims(400, 267)),
    ("photo.jpg@watermark,image_{LOGO}", Dims(400, 267)),
    ("photo.jpg@watermark,image_{LOGO},t_50,g_nw,x_0,y_0@format,webp", Fmt("webp", 400, 267)),
    ("photo.jpg@watermark,image_{LOGO30},g_center", Dims(400, 267)),
    ("photo.jpg@watermark,image_{NONE}", Errno(libc::ENOENT)),
    // Animations: frame-wise chains keep every frame and its delay, GIF ⇄ WebP.
    ("anim.gif@resize,w_30", Frames("gif", 30, 20, 4, 200)),
    ("anim.gif@format,webp", Frames("webp", 60, 40, 4, 200)),
    ("anim.gif@resize,w_30@format,webp", Frames("webp", 30, 20, 4, 200)),
    ("anim.webp@format,gif", Frames("gif", 60, 40, 4, 200)),
    ("anim.webp@resize,h_20", Frames("webp", 30, 20, 4, 200)),
    ("anim.gif@crop,w_30,h_20,g_center", Frames("gif", 30, 20, 4, 200)),
    ("anim.gif@indexcrop,x_20,i_1", Frames("gif", 20, 40, 4, 200)),
    ("anim.gif@rotate,90", Frames("gif", 40, 60, 4, 200)),
    ("anim.webp@rotate,270", Frames("webp", 40, 60, 4, 200)),
    ("anim.gif@flip,hv", Frames("gif", 60, 40, 4, 200)),
    ("anim.gif@quality,Q_50@format,webp", Frames("webp", 60, 40, 4, 200)),
    // ... other operations, or a still format: the first frame alone (documented).
    ("anim.gif@blur,r_2,s_2", Frames("gif", 60, 40, 1, 0)),
    ("anim.gif@rotate,45", Frames("gif", 71, 71, 1, 0)),
    ("anim.webp@bright,20", Frames("webp", 60, 40, 1, 0)),
    ("anim.gif@format,png", Frames("png", 60, 40, 1, 0)),
    ("anim.webp@format,jpg", Frames("jpeg", 60, 40, 1, 0)),
    ("anim.gif@info", Info(60, 40, 4)),
    ("anim.webp@info", Info(60, 40, 4)),
    ("anim.gif@resize,w_30@info", Info(30, 20, 4)),
    ("anim.gif@format,webp@info", Info(60, 40, 4)),
    ("anim.gif@blur,r_2,s_2@info", Info(60, 40, 1)),
    // Missing and undecodable sources.
    ("nothere.jpg@resize,w_10", Errno(libc::ENOENT)),
    ("outside.txt@resize,w_10", Errno(libc::EIO)),
];

/// Names that are EINVAL: each op's keys out of range, missing, unknown or malformed.
#[rustfmt::skip]
const INVALID: &[&str] = &[
    // resize: no target, out of range, not a number, repeated or unknown keys.
    "wide.png@resize", "wide.png@resize,w_0", "wide.png@resize,w_16385", "wide.png@resize,h_0",
    "wide.png@resize,l_0", "wide.png@resize,s_16385", "wide.png@resize,p_0",
    "wide.png@resize,p_1001", "wide.png@resize,w_10,limit_2", "wide.png@resize,w_10,m_zoom",
    "wide.png@resize,m_pad,w_10,color_GG0000", "wide.png@resize,m_pad,w_10,color_FFF",
    "wide.png@resize,w_-5", "wide.png@resize,w_abc", "wide.png@resize,w_10,w_20",
    "wide.png@resize,w_10,zoom_2",
    // crop: a start point outside the image.
    "photo.jpg@crop,w_10,h_10,x_400", "photo.jpg@crop,w_10,h_10,y_267", "photo.jpg@crop,w_0",
    "photo.jpg@crop,w_10,x_-1", "photo.jpg@crop,w_10,g_middle",
    "photo.jpg@indexcrop,x_0", "photo.jpg@indexcrop,y_0,i_1", "photo.jpg@indexcrop,i_1",
    "photo.jpg@indexcrop,x_10,i_-1",
    "photo.jpg@circle", "photo.jpg@circle,r_0", "photo.jpg@circle,r_4097",
    "photo.jpg@rounded-corners,r_0", "photo.jpg@rounded-corners,r_4097",
    "photo.jpg@rotate,361", "photo.jpg@rotate,-90", "photo.jpg@rotate,9x", "photo.jpg@rotate",
    "photo.jpg@flip,x", "photo.jpg@flip",
    "photo.jpg@blur,r_3", "photo.jpg@blur,r_0,s_2", "photo.jpg@blur,r_51,s_2",
    "photo.jpg@blur,r_3,s_0", "photo.jpg@blur,r_3,s_51",
    "photo.jpg@bright,101", "photo.jpg@bright,-101", "photo.jpg@bright,high",
    "photo.jpg@contrast,101", "photo.jpg@contrast,-101", "photo.jpg@sharpen,49", "photo.jpg@sharpen,400",
    "photo.jpg@info,1",
    "photo.jpg@style,nope", "photo.jpg@style",
    "photo.jpg@format,jp2", "photo.jpg@format", "photo.jpg@quality,Q_0", "photo.jpg@quality,Q_101",
    "photo.jpg@quality,q_0", "photo.jpg@quality,q_101", "photo.jpg@quality,50",
    "photo.jpg@interlace,2",
    "turned.jpg@auto-orient,2",
    // watermark: also both or neither of text and image, a font imgfs lacks, 65 characters,
    // a text key on an image mark, a path climbing out of the source root.
    "photo.jpg@watermark,text_{TEXT},t_101", "photo.jpg@watermark,text_{TEXT},size_0",
    "photo.jpg@watermark,text_{TEXT},size_1001", "photo.jpg@watermark,text_{TEXT},color_ZZZZZZ",
    "photo.jpg@watermark,text_{TEXT},shadow_101", "photo.jpg@watermark,text_{TEXT},rotate_361",
    "photo.jpg@watermark,text_{TEXT},fill_2", "photo.jpg@watermark,text_{TEXT},g_middle",
    "photo.jpg@watermark,text_{TEXT},x_4097", "photo.jpg@watermark,text_{TEXT},voffset_1001",
    "photo.jpg@watermark,text_{TEXT},type_{ARIAL}", "photo.jpg@watermark,text_{LONG}",
    "photo.jpg@watermark,text_!!!", "photo.jpg@watermark,text_{TEXT},image_{LOGO}",
    "photo.jpg@watermark,t_50", "photo.jpg@watermark,image_{LOGO},size_20",
    "photo.jpg@watermark,image_{LOGO0}", "photo.jpg@watermark,image_{OUT}",
    // An unknown operation.
    "photo.jpg@sepia,1",
];

/// Checks one row: the output, decoded from a file by independent decoders, or the errno.
fn check(sources: &Library, name: &str, expect: &Expect) -> Result<(), String> {
    let converted = sources.convert(name);
    if let Errno(want) = *expect {
        return match converted {
            Err(got) if got == want => Ok(()),
            Err(got) => Err(format!("errno {got}")),
            Ok(bytes) => Err(format!("{} bytes, no error", bytes.len())),
        };
    }
    let bytes = converted.map_err(|errno| format!("errno {errno}"))?;
    if bytes.is_empty() {
        return Err("no bytes".into());
    }
    let path = sources.write(&bytes);
    let decoded = |f: fn(&Path) -> String| {
        std::panic::catch_unwind(|| f(&path)).map_err(|_| "undecodable".to_string())
    };
    let (got, want) = match *expect {
        Dims(w, h) => (
            decoded(|p| format!("{:?}", &inspect(p)))?,
            format!(", {w}, {h})"),
        ),
        Fmt(f, w, h) => (
            decoded(|p| format!("{:?}", inspect(p)))?,
            format!("({f:?}, {w}, {h})"),
        ),
        Frames(f, w, h, n, ms) => (
            decoded(frames)?,
            format!("{f} {w}x{h} delays {:?}", vec![ms; n]),
        ),
        Info(w, h, n) => (describe_json(&bytes), format!("info {w}x{h} frames {n}")),
        Hue(rgb) => (describe_json(&bytes), format!("hue {rgb}")),
        Errno(_) => unreachable!(),
    };
    // Dims leaves the format out: only the end of "(format, w, h)" has to match.
    got.ends_with(&want)
        .then_some(())
        .ok_or(format!("got {got}"))
}

/// `hue 0xRRGGBB`, or `info WxH frames N` when every field of the info JSON has the shape
/// `"Name": {"value": "string"}` and FileSize and Format are there.
fn describe_json(bytes: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return format!("not JSON: {}", String::from_utf8_lossy(bytes));
    };
    let fields = v.as_object().cloned().unwrap_or_default();
    if let (Some(rgb), 1) = (v["RGB"].as_str(), fields.len()) {
        return format!("hue {rgb}");
    }
    let value = |k: &str| v[k]["value"].as_str().unwrap_or("?").to_string();
    let shaped = fields.values().all(|f| {
        f.as_object()
            .is_some_and(|f| f.len() == 1 && f["value"].is_string())
    });
    if !shaped || value("FileSize") == "?" || value("Format") == "?" {
        return format!("malformed: {v}");
    }
    format!(
        "info {}x{} frames {}",
        value("ImageWidth"),
        value("ImageHeight"),
        value("FrameCount")
    )
}

#[test]
fn conformance_table() {
    let sources = library();
    let invalid: Vec<(&str, Expect)> = INVALID.iter().map(|n| (*n, Errno(EINVAL))).collect();
    let mut failures = Vec::new();
    for (name, expect) in ROWS.iter().chain(&invalid) {
        let name = expand(name);
        if let Err(e) = check(&sources, &name, expect) {
            failures.push(format!("{name}: want {expect:?}, {e}"));
        }
    }
    let count = ROWS.len() + INVALID.len();
    assert!(
        failures.is_empty(),
        "{} of {count} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Rows of the table that also go through a real mount: each operation family once, info
/// and average-hue JSON, an animation, and every errno the table expects.
#[rustfmt::skip]
const THROUGH_MOUNT: &[&str] = &[
    "wide.png@resize,m_pad,w_150,h_80,color_00FF00",
    "photo.jpg@crop,w_100,h_50,x_10,y_5,g_se",
    "photo.jpg@indexcrop,x_150,i_2",
    "photo.jpg@circle,r_100@format,png",
    "photo.jpg@rotate,45",
    "photo.jpg@sharpen,50",
    "turned.jpg@resize,w_100",
    "photo.jpg@style,thumb",
    "photo.jpg@format,heic@resize,w_100",
    "photo.jpg@watermark,image_{LOGO},t_50,g_nw,x_0,y_0@format,webp",
    "photo.jpg@resize,w_100@format,png@info",
    "solid.png@average-hue",
    "anim.gif@resize,w_30@format,webp",
    "photo.jpg@watermark,image_{NONE}",
    "photo.jpg@rotate,361",
    "nothere.jpg@resize,w_10",
    "outside.txt@resize,w_10",
];

/// Needs root and /dev/fuse. The kernel path (lookup, stat, read) answers what the library
/// answers, so the table's verdicts hold for the mount.
#[test]
fn a_real_mount_gives_the_library_bytes() {
    let m = Mount::with(
        MountOptions::default(),
        Settings::default(),
        styles(),
        make_sources,
    );
    let mut failures = Vec::new();
    for name in THROUGH_MOUNT.iter().map(|n| expand(n)) {
        let path = m.path(&name);
        let through_mount = match (fs::metadata(&path), fs::read(&path)) {
            (Ok(attr), Ok(bytes)) if attr.len() == bytes.len() as u64 => Ok(bytes),
            (Ok(attr), Ok(bytes)) => {
                failures.push(format!(
                    "{name}: st_size {} but {} bytes read",
                    attr.len(),
                    bytes.len()
                ));
                continue;
            }
            (attr, read) => match (errno_of(attr), errno_of(read)) {
                (stat, read) if stat == read => Err(stat),
                got => {
                    failures.push(format!("{name}: errno (stat, read) {got:?}"));
                    continue;
                }
            },
        };
        let from_library = convert_name(&m.source, &styles(), &name);
        if through_mount != from_library {
            let show = |r: &Result<Vec<u8>, i32>| match r {
                Ok(bytes) => format!("{} bytes", bytes.len()),
                Err(errno) => format!("errno {errno}"),
            };
            failures.push(format!(
                "{name}: mount {}, library {}",
                show(&through_mount),
                show(&from_library)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `name` with each `{NAME}` of BASE64 replaced.
fn expand(name: &str) -> String {
    BASE64
        .iter()
        .fold(name.to_string(), |n, (k, v)| n.replace(k, &b64(v)))
}

/// Frame `index` of `path` as ImageMagick decodes and coalesces it (through a PNG32).
fn frame_pixels(path: &Path, index: usize) -> RgbaImage {
    let args = format!("-coalesce -swap 0,{index} -delete 1--1 -depth 8 PNG32:-");
    let args: Vec<&str> = [path.to_str().unwrap()]
        .into_iter()
        .chain(args.split(' '))
        .collect();
    image::load_from_memory(&run(MAGICK, &args))
        .unwrap()
        .to_rgba8()
}

fn pixels(path: &Path) -> RgbaImage {
    frame_pixels(path, 0)
}

/// An `-fx` statistic of `path` (0..1) as ImageMagick computes it.
fn stat(path: &Path, fx: &str) -> f64 {
    let format = format!("%[fx:{fx}]");
    let out = run(
        MAGICK,
        &[path.to_str().unwrap(), "-format", &format, "info:"],
    );
    String::from_utf8(out).unwrap().trim().parse().unwrap()
}

/// Each channel within `tolerance` of `want`; only alpha counts when `want` is transparent.
fn near(got: [u8; 4], want: [u8; 4], tolerance: u8) -> bool {
    let channels = if want[3] == 0 { 3..4 } else { 0..4 };
    channels
        .into_iter()
        .all(|c| got[c].abs_diff(want[c]) <= tolerance)
}

/// "FORMAT WxH delays [MS, ...]" (one delay a frame) as identify (GIF and stills) or
/// webpmux (WebP, animated or not) see the file.
fn frames(path: &Path) -> String {
    let p = path.to_str().unwrap();
    if !fs::read(path).unwrap().starts_with(b"RIFF") {
        let out = String::from_utf8(run(IDENTIFY, &["-format", "%m %Wx%H %T\n", p])).unwrap();
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
        let delays: Vec<u32> = rows
            .iter()
            .map(|r| r[2].parse::<u32>().unwrap() * 10)
            .collect();
        return format!(
            "{} {} delays {delays:?}",
            rows[0][0].to_lowercase(),
            rows[0][1]
        );
    }
    let info = String::from_utf8(run("webpmux", &["-info", p])).unwrap();
    let canvas = info
        .lines()
        .find_map(|l| l.strip_prefix("Canvas size: "))
        .unwrap();
    // Frame rows: "  1:    60    40    no    0    0    200   none ..."; the 7th is the delay.
    let mut delays: Vec<u32> = (info.lines())
        .filter(|l| {
            l.trim_start()
                .split(':')
                .next()
                .unwrap()
                .parse::<u32>()
                .is_ok()
        })
        .map(|l| l.split_whitespace().nth(6).unwrap().parse().unwrap())
        .collect();
    if !info.contains("Features present: animation") {
        delays = vec![0];
    }
    format!("webp {} delays {delays:?}", canvas.replace(" x ", "x"))
}

const RED: [u8; 4] = [255, 0, 0, 255];
const LIME: [u8; 4] = [0, 255, 0, 255];
const BLUE: [u8; 4] = [0, 0, 255, 255];
const YELLOW: [u8; 4] = [255, 255, 0, 255];
const WHITE: [u8; 4] = [255, 255, 255, 255];
const CLEAR: [u8; 4] = [0, 0, 0, 0];
const SOLID: [u8; 4] = [0x33, 0x66, 0xCC, 255];

#[test]
fn pixels_are_where_each_operation_puts_them() {
    let m = library();
    // quad.png (100×60) is red | lime over blue | yellow: its corners after each operation
    // (top-left, top-right, bottom-left, bottom-right), decoded exactly from PNG.
    let corners = |name: &str| {
        let p = pixels(&m.path(name));
        let (w, h) = p.dimensions();
        [(2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3)].map(|(x, y)| p.get_pixel(x, y).0)
    };
    assert_eq!(corners("quad.png"), [RED, LIME, BLUE, YELLOW]);
    assert_eq!(corners("quad.png@flip,h"), [LIME, RED, YELLOW, BLUE]);
    assert_eq!(corners("quad.png@flip,v"), [BLUE, YELLOW, RED, LIME]);
    assert_eq!(corners("quad.png@flip,hv"), [YELLOW, BLUE, LIME, RED]);
    // Clockwise: the left column becomes the top row.
    assert_eq!(corners("quad.png@rotate,90"), [BLUE, RED, YELLOW, LIME]);
    assert_eq!(corners("quad.png@rotate,270"), [LIME, YELLOW, RED, BLUE]);
    assert_eq!(corners("quad.png@crop,w_50,h_30,g_se"), [YELLOW; 4]);
    assert_eq!(corners("quad.png@crop,w_40,h_20,g_ne,x_5"), [LIME; 4]);
    assert_eq!(
        corners("quad.png@indexcrop,y_30,i_1@indexcrop,x_50"),
        [BLUE; 4]
    );
    let jpg = corners("quad.png@flip,h@format,jpg");
    assert!(near(jpg[0], LIME, 12) && near(jpg[3], BLUE, 12), "{jpg:?}");

    // Masks and canvases: transparent where the format has alpha, white where it has not
    // (JPEG rings near edges, hence the tolerance). solid.png is 64×64 #3366CC.
    #[rustfmt::skip]
    let points = [
        ("solid.png@circle,r_20", (0, 0), CLEAR, 0),
        ("solid.png@circle,r_20", (40, 40), CLEAR, 0),
        ("solid.png@circle,r_20", (20, 20), SOLID, 0),
        ("solid.png@circle,r_20", (20, 0), SOLID, 0),
        ("solid.png@circle,r_20@format,jpg", (0, 0), WHITE, 12),
        ("solid.png@circle,r_20@format,jpg", (20, 20), SOLID, 6),
        ("photo.jpg@circle,r_100", (1, 1), WHITE, 12),
        ("photo.jpg@circle,r_100@format,png", (1, 199), CLEAR, 0),
        ("solid.png@rounded-corners,r_20", (63, 0), CLEAR, 0),
        ("solid.png@rounded-corners,r_20", (32, 32), SOLID, 0),
        ("solid.png@rounded-corners,r_20@format,jpg", (0, 63), WHITE, 12),
        ("solid.png@rounded-corners,r_20@format,jpg", (32, 32), SOLID, 6),
        // rotate,45: 64×64 → 91×91, the canvas corners lie outside the turned square.
        ("solid.png@rotate,45", (0, 0), CLEAR, 0),
        ("solid.png@rotate,45", (45, 45), SOLID, 0),
        ("solid.png@rotate,45@format,jpg", (0, 0), WHITE, 12),
        ("solid.png@rotate,45@format,jpg", (90, 90), WHITE, 12),
        ("solid.png@rotate,45@format,jpg", (45, 45), SOLID, 6),
        ("photo.jpg@rotate,45", (2, 2), WHITE, 12),
        ("photo.jpg@rotate,45@format,webp", (2, 2), CLEAR, 0),
        // pad: the 150×75 image centred on a 150×80 canvas of the colour asked for.
        ("wide.png@resize,m_pad,w_150,h_80,color_00FF00", (75, 0), LIME, 0),
        ("wide.png@resize,m_pad,w_150,h_80,color_00FF00", (75, 79), LIME, 0),
    ];
    for (name, (x, y), want, tolerance) in points {
        let got = pixels(&m.path(name)).get_pixel(x, y).0;
        assert!(
            near(got, want, tolerance),
            "{name} at ({x}, {y}): {got:?}, want {want:?}"
        );
    }
    // rounded-corners changes nothing outside the four corner boxes.
    let (source, round) = (
        pixels(&m.path("wide.png")),
        pixels(&m.path("wide.png@rounded-corners,r_20")),
    );
    for (x, y, p) in round.enumerate_pixels() {
        let in_corner = !(20..180).contains(&x) && !(20..80).contains(&y);
        assert!(
            in_corner || p == source.get_pixel(x, y),
            "({x}, {y}) changed"
        );
    }
}

#[test]
fn watermarks_change_pixels_only_where_they_stand() {
    let m = library();
    let base = pixels(&m.path("photo.jpg@format,png"));
    let changed = |args: String| -> Vec<(u32, u32, [u8; 4])> {
        let marked = pixels(&m.path(&format!("photo.jpg@watermark,{args}@format,png")));
        assert_eq!(marked.dimensions(), base.dimensions());
        let diff = marked
            .enumerate_pixels()
            .filter(|(x, y, p)| *p != base.get_pixel(*x, *y));
        diff.map(|(x, y, p)| (x, y, p.0)).collect()
    };
    let inside =
        |diff: &[(u32, u32, [u8; 4])], xs: std::ops::Range<u32>, ys: std::ops::Range<u32>| {
            diff.iter()
                .all(|(x, y, _)| xs.contains(x) && ys.contains(y))
        };
    // The 40×20 lime logo at se with 10 px margins covers exactly [350, 390) × [237, 257).
    let diff = changed(format!("image_{}", b64("marks/logo.png")));
    assert_eq!(diff.len(), 40 * 20);
    assert!(inside(&diff, 350..390, 237..257) && diff.iter().all(|d| d.2 == LIME));
    // Text: ink past the 10 px margins near its corner, or at the bottom centre.
    let text = b64("imgfs");
    let diff = changed(format!("text_{text},g_nw,size_20,color_FFFFFF"));
    assert!(
        diff.len() > 50 && inside(&diff, 10..150, 10..60),
        "{} changed",
        diff.len()
    );
    let diff = changed(format!("text_{text},g_south,size_20"));
    assert!(
        diff.len() > 50 && inside(&diff, 120..280, 200..257),
        "{} changed",
        diff.len()
    );
    // t_0 is invisible.
    assert!(changed(format!("text_{text},t_0")).is_empty());
}

#[test]
fn adjustments_and_encode_settings_do_what_they_say() {
    let m = library();
    // interlace,1 is progressive JPEG; Q_n is the quality identify estimates.
    let identify = |name: &str, format: &str| {
        let out = run(
            IDENTIFY,
            &["-format", format, m.path(name).to_str().unwrap()],
        );
        String::from_utf8(out).unwrap()
    };
    assert_eq!(identify("photo.jpg@interlace,1", "%[interlace]"), "JPEG");
    assert_eq!(
        identify("photo.jpg@resize,w_99@interlace,0", "%[interlace]"),
        "None"
    );
    assert_eq!(identify("photo.jpg@quality,Q_40", "%Q"), "40");
    assert_eq!(identify("wide.png@quality,Q_70@format,jpg", "%Q"), "70");
    let png = |chain: &str| m.path(&format!("photo.jpg{chain}@format,png"));
    let mean = |chain: &str| stat(&png(chain), "mean");
    let spread = |chain: &str| stat(&png(chain), "standard_deviation");
    let (m0, s0) = (mean(""), spread(""));
    assert!(mean("@bright,50") > m0 + 0.1 && mean("@bright,-50") < m0 - 0.1);
    assert!(spread("@contrast,50") > s0 * 1.2 && spread("@contrast,-50") < s0 * 0.8);
    // contrast,-100 is flat mid-grey.
    assert!(spread("@contrast,-100") < 0.01 && (mean("@contrast,-100") - 0.5).abs() < 0.01);
    assert!(spread("@blur,r_10,s_10") < s0);
    // Sharpening adds detail: the distance to the original grows with the amount.
    let distance = |chain: &str| {
        let (a, b) = (pixels(&png("")), pixels(&png(chain)));
        a.pixels()
            .zip(b.pixels())
            .map(|(p, q)| u64::from(p[0].abs_diff(q[0])))
            .sum::<u64>()
    };
    assert!(distance("@sharpen,300") > distance("@sharpen,50") && distance("@sharpen,50") > 0);
    // average-hue is ImageMagick's mean colour of the same photo.
    let hue = describe_json(&fs::read(m.path("photo.jpg@average-hue")).unwrap());
    let hue = u32::from_str_radix(hue.trim_start_matches("hue 0x"), 16).unwrap();
    for (shift, channel) in [(16, "r"), (8, "g"), (0, "b")] {
        let want = stat(&m.source.join("photo.jpg"), &format!("mean.{channel}")) * 255.0;
        let got = f64::from((hue >> shift) & 0xFF);
        assert!((got - want).abs() <= 2.0, "{channel}: {got} vs {want}");
    }
}

#[test]
fn animated_frames_keep_their_content_and_order() {
    let m = library();
    // GIF → WebP (imgfs's own output, copied into the source) → flipped GIF.
    let webp = fs::read(m.path("anim.gif@format,webp")).unwrap();
    fs::write(m.source.join("round-trip.webp"), webp).unwrap();
    let back = m.path("round-trip.webp@flip,h@format,gif");
    assert_eq!(frames(&back), "gif 60x40 delays [200, 200, 200, 200]");
    for (i, colour) in [RED, LIME, BLUE, YELLOW].into_iter().enumerate() {
        let got = frame_pixels(&back, i).get_pixel(30, 20).0;
        assert!(near(got, colour, 8), "frame {i}: {got:?}");
    }
    assert!(near(
        pixels(&m.path("anim.webp@format,png")).get_pixel(5, 5).0,
        RED,
        8
    ));
    // Sub-rectangle frames are composited as ImageMagick coalesces them.
    let out = m.path("patches.gif@flip,h");
    let src = m.source.join("patches.gif");
    assert_eq!(frames(&out), "gif 60x40 delays [200, 200, 200]");
    for i in 0..3 {
        let mut want = frame_pixels(&src, i);
        image::imageops::flip_horizontal_in_place(&mut want);
        assert!(frame_pixels(&out, i) == want, "frame {i} differs");
    }
}
