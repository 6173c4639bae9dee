//! `watermark`: text or image marks, with OSS's URL-safe Base64 values.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use super::args::{color_hex, push_kv, KeyedArgs};
use super::ops::{
    parse_gravity, Gravity, ImageMark, TextMark, Watermark, WatermarkContent, DEFAULT_FONT, FONTS,
};
use crate::error::{Error, Result};

/// URL-safe Base64, padded or not (OSS examples use both).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// OSS limits a text mark to 64 characters.
pub const MAX_TEXT_CHARS: usize = 64;

const KEYS: [&str; 13] = [
    "t", "g", "x", "y", "voffset", "text", "type", "color", "size", "shadow", "rotate", "fill",
    "image",
];

pub(crate) fn parse(args: &[&str]) -> Result<Watermark> {
    let a = KeyedArgs::parse("watermark", args, &KEYS)?;
    let content = match (a.raw("text"), a.raw("image")) {
        (Some(_), Some(_)) => return Err(Error::spec(
            "watermark: text and image in one mark are not supported; use two watermark operations",
        )),
        (None, None) => return Err(Error::spec("watermark: needs text or image")),
        (Some(text), None) => {
            let text = decode_text("watermark text", text)?;
            if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
                return Err(Error::spec(format!(
                    "watermark text: must be 1 to {MAX_TEXT_CHARS} characters"
                )));
            }
            let font = match a.raw("type") {
                Some(t) => decode_text("watermark type", t)?,
                None => DEFAULT_FONT.to_string(),
            };
            if !FONTS.contains(&font.as_str()) {
                return Err(Error::spec(format!(
                    "watermark type: font '{font}' is not one of {}",
                    FONTS.join(", ")
                )));
            }
            WatermarkContent::Text(TextMark {
                text,
                font,
                color: a.color("color")?.unwrap_or([0, 0, 0]),
                size: a.uint("size", 1, 1000)?.unwrap_or(40),
                shadow: a.uint("shadow", 0, 100)?.unwrap_or(0),
                rotate: a.uint("rotate", 0, 360)?.unwrap_or(0) % 360,
                fill: a.uint("fill", 0, 1)?.unwrap_or(0) == 1,
            })
        }
        (None, Some(image)) => {
            for key in ["type", "color", "size", "shadow", "rotate", "fill"] {
                if a.raw(key).is_some() {
                    return Err(Error::spec(format!(
                        "watermark: key '{key}' applies to text marks only"
                    )));
                }
            }
            WatermarkContent::Image(parse_image(&decode_text("watermark image", image)?)?)
        }
    };
    Ok(Watermark {
        opacity: a.uint("t", 0, 100)?.unwrap_or(100),
        gravity: parse_gravity(&a, Gravity::SouthEast)?,
        x: a.uint("x", 0, 4096)?.unwrap_or(10),
        y: a.uint("y", 0, 4096)?.unwrap_or(10),
        voffset: a.int("voffset", -1000, 1000)?.unwrap_or(0) as i32,
        content,
    })
}

/// `path` or `path?x-oss-process=image/resize,P_n`.
fn parse_image(value: &str) -> Result<ImageMark> {
    let (path, process) = match value.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (value, None),
    };
    if path.is_empty() || path.contains('\0') {
        return Err(Error::spec("watermark image: empty path"));
    }
    // Named relative to the source root: a `..` could only climb out of it.
    if path.split('/').any(|part| part == "..") {
        return Err(Error::spec(format!(
            "watermark image '{path}': '..' may not climb out of the source root"
        )));
    }
    let percent = match process {
        None => None,
        Some(query) => {
            let chain = query
                .strip_prefix("x-oss-process=image/resize,P_")
                .ok_or_else(|| {
                    Error::spec(format!(
                        "watermark image: '{query}' is not x-oss-process=image/resize,P_n"
                    ))
                })?;
            Some(super::args::parse_int("watermark image resize P", chain, 1, 100)? as u32)
        }
    };
    Ok(ImageMark {
        path: path.trim_start_matches('/').to_string(),
        percent,
    })
}

fn decode_text(what: &str, value: &str) -> Result<String> {
    let bytes = B64
        .decode(value)
        .map_err(|e| Error::spec(format!("{what}: '{value}' is not URL-safe Base64 ({e})")))?;
    String::from_utf8(bytes).map_err(|_| Error::spec(format!("{what}: not UTF-8 text")))
}

pub fn encode_text(text: &str) -> String {
    B64.encode(text.as_bytes())
}

pub(crate) fn canonical(w: &Watermark) -> String {
    let mut out = String::from("watermark");
    if w.opacity != 100 {
        push_kv(&mut out, "t", w.opacity);
    }
    if w.gravity != Gravity::SouthEast {
        push_kv(&mut out, "g", w.gravity.name());
    }
    if w.x != 10 {
        push_kv(&mut out, "x", w.x);
    }
    if w.y != 10 {
        push_kv(&mut out, "y", w.y);
    }
    if w.voffset != 0 {
        push_kv(&mut out, "voffset", w.voffset);
    }
    match &w.content {
        WatermarkContent::Text(t) => {
            push_kv(&mut out, "text", encode_text(&t.text));
            if t.font != DEFAULT_FONT {
                push_kv(&mut out, "type", encode_text(&t.font));
            }
            if t.color != [0, 0, 0] {
                push_kv(&mut out, "color", color_hex(t.color));
            }
            if t.size != 40 {
                push_kv(&mut out, "size", t.size);
            }
            if t.shadow != 0 {
                push_kv(&mut out, "shadow", t.shadow);
            }
            if t.rotate != 0 {
                push_kv(&mut out, "rotate", t.rotate);
            }
            if t.fill {
                push_kv(&mut out, "fill", 1);
            }
        }
        WatermarkContent::Image(m) => {
            let value = match m.percent {
                Some(p) => format!("{}?x-oss-process=image/resize,P_{p}", m.path),
                None => m.path.clone(),
            };
            push_kv(&mut out, "image", encode_text(&value));
        }
    }
    out
}
