//! Decode + pipeline on arbitrary bytes with small limits.
//!
//! Input: the first byte picks one of SPECS, or one of the two watermark builders past
//! them (modulo SPECS.len() + 2); a builder reads its arguments from the next
//! WATERMARK_BYTES bytes. The rest is the source file. Property: no panic, every error is
//! one of the filesystem's errno kinds (EINVAL, EFBIG, EIO, ENOENT), and every success is
//! non-empty.
#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use imgfs::limits::Limits;
use imgfs::pipeline::{self, Marks, Settings};
use imgfs::spec::{encode_base64, Spec, Styles};
use libfuzzer_sys::fuzz_target;

const SPECS: &[&str] = &[
    "resize,w_64@format,png",
    "format,webp",
    "format,heic@resize,w_32",
    "rotate,45@format,jpg",
    "info",
    "crop,w_10,h_10,g_center@format,gif",
    "average-hue",
    "resize,m_pad,w_40,h_20@format,bmp",
    "blur,r_3,s_2@sharpen,100@quality,q_50@format,jpg",
    "circle,r_20@format,tiff",
    "watermark,text_SGVsbG8,size_12@format,png",
    "indexcrop,x_5,i_1@rounded-corners,r_4@format,avif",
];

/// Arguments of a built watermark: text length, script and fill, size (2 bytes), rotate
/// (0 to 360 in 255 steps), shadow, opacity.
const WATERMARK_BYTES: usize = 7;

/// The image mark the image builder names: the PNG seed's source.
const MARK_PNG: &[u8] = include_bytes!("../corpus/pipeline/seed-png-watermark");

/// A text mark of any length, size, angle, shadow and fill, or an image mark (the root's
/// PNG, or a missing file) with or without `P_` scaling, at any opacity.
fn watermark_spec(image: bool, p: &[u8; WATERMARK_BYTES]) -> String {
    let size = 1 + u16::from_le_bytes([p[2], p[3]]) % 1000;
    let opacity = p[6] % 101;
    if image {
        let name = if p[0] & 1 == 0 {
            "mark.png"
        } else {
            "missing.png"
        };
        let path = match p[1] % 2 {
            0 => name.to_string(),
            _ => format!("{name}?x-oss-process=image/resize,P_{}", 1 + size % 100),
        };
        return format!("watermark,image_{},t_{opacity}", encode_base64(&path));
    }
    let glyph = if p[1] & 1 == 0 { "水" } else { "W" };
    let text = glyph.repeat(1 + usize::from(p[0] % 64));
    format!(
        "watermark,text_{},size_{size},rotate_{},shadow_{},fill_{},t_{opacity}",
        encode_base64(&text),
        u16::from(p[4]) * 360 / 255,
        p[5] % 101,
        p[0] >> 7,
    )
}

fn specs() -> &'static [Spec] {
    static PARSED: OnceLock<Vec<Spec>> = OnceLock::new();
    PARSED.get_or_init(|| {
        SPECS
            .iter()
            .map(|s| Spec::parse(s, &Styles::default()).unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect()
    })
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        limits: Limits {
            max_source_bytes: 1_000_000,
            max_source_side: 2048,
            max_source_pixels: 4_000_000,
            max_output_side: 2048,
            max_output_pixels: 4_000_000,
        },
        ..Default::default()
    })
}

/// The watermark images read for a conversion: `mark.png` only (the PNG seed's source).
fn marks() -> &'static Marks {
    static MARKS: OnceLock<Marks> = OnceLock::new();
    MARKS.get_or_init(|| {
        let mut marks = Marks::default();
        marks.insert("mark.png".into(), MARK_PNG[1..].to_vec());
        marks
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let specs = specs();
    let index = usize::from(selector) % (specs.len() + 2);
    let (text, built, source) = match index.checked_sub(specs.len()) {
        None => (Cow::Borrowed(SPECS[index]), None, rest),
        Some(builder) => {
            let Some((args, source)) = rest.split_first_chunk::<WATERMARK_BYTES>() else {
                return;
            };
            let text = watermark_spec(builder == 1, args);
            let spec =
                Spec::parse(&text, &Styles::default()).unwrap_or_else(|e| panic!("{text}: {e}"));
            (Cow::Owned(text), Some(spec), source)
        }
    };
    let spec = built.as_ref().unwrap_or_else(|| &specs[index]);
    match pipeline::convert(source, marks(), spec, settings()) {
        Ok(out) => assert!(
            !out.bytes.is_empty(),
            "{text}: empty output ({:?})",
            out.format
        ),
        Err(e) => {
            let errno = e.errno();
            assert!(
                [libc::EINVAL, libc::EFBIG, libc::EIO, libc::ENOENT].contains(&errno),
                "{text}: error {e:?} has errno {errno}",
            );
        }
    }
});
