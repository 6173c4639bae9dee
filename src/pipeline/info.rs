//! `info` and `average-hue`: JSON answers in OSS's shape.

use std::collections::BTreeMap;

use image::DynamicImage;
use serde_json::{json, Value};

use super::codec::{self, Header};
use super::{Metadata, Output, Settings};
use crate::error::Result;
use crate::limits::MAX_EXIF_BYTES;

/// Describes the source file itself (a bare `info`: only the header is read).
pub(super) fn describe(
    source: &[u8],
    header: &Header,
    file_size: usize,
    settings: &Settings,
) -> Result<Output> {
    // The source as it is: every field of its primary image, unless outputs are stripped.
    let exif = (settings.metadata != Metadata::Strip)
        .then(|| codec::read_exif(source, header.format))
        .flatten();
    Ok(render(file_size, header, exif.as_deref()))
}

/// Describes an encoded result.
pub(super) fn describe_with_exif(
    encoded: &[u8],
    header: &Header,
    exif: Option<&[u8]>,
) -> Result<Output> {
    Ok(render(encoded.len(), header, exif))
}

fn render(file_size: usize, header: &Header, exif: Option<&[u8]>) -> Output {
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(exif) = exif {
        for (name, value) in exif_fields(exif) {
            fields.insert(name, json!({ "value": value }));
        }
    }
    let mut put = |name: &str, value: String| {
        fields.insert(name.to_string(), json!({ "value": value }));
    };
    put("FileSize", file_size.to_string());
    put("Format", header.format.name().to_string());
    put("FrameCount", header.frames.to_string());
    put("ImageHeight", header.height.to_string());
    put("ImageWidth", header.width.to_string());
    Output {
        bytes: serde_json::to_vec(&fields).unwrap_or_default(),
        format: None,
    }
}

/// Every EXIF field of the primary image (IFD0, Exif and GPS IFDs) as OSS names them.
fn exif_fields(tiff: &[u8]) -> Vec<(String, String)> {
    if tiff.len() > MAX_EXIF_BYTES {
        tracing::info!(
            "EXIF of {} bytes not shown: the limit is {MAX_EXIF_BYTES}",
            tiff.len()
        );
        return Vec::new();
    }
    let Ok(exif) = exif::Reader::new().read_raw(tiff.to_vec()) else {
        return Vec::new();
    };
    exif.fields()
        .filter(|f| f.ifd_num == exif::In::PRIMARY)
        .filter(|f| {
            !matches!(f.value, exif::Value::Undefined(..)) || f.tag == exif::Tag::ExifVersion
        })
        .map(|f| {
            let value = match &f.value {
                exif::Value::Ascii(_) => {
                    f.display_value().to_string().trim_matches('"').to_string()
                }
                exif::Value::Short(_) | exif::Value::Long(_) | exif::Value::Byte(_) => f
                    .value
                    .get_uint(0)
                    .map_or_else(|| f.display_value().to_string(), |v| v.to_string()),
                _ => f.display_value().to_string(),
            };
            (f.tag.to_string(), value)
        })
        .collect()
}

/// The average colour of the pixels, alpha ignored: `{"RGB":"0xRRGGBB"}`.
pub(super) fn average_hue(image: &DynamicImage) -> Output {
    let rgb = image.to_rgb8();
    let mut sums = [0u64; 3];
    for pixel in rgb.pixels() {
        for c in 0..3 {
            sums[c] += u64::from(pixel[c]);
        }
    }
    let n = u64::from(rgb.width()) * u64::from(rgb.height());
    let avg = |c: usize| (sums[c] + n / 2) / n.max(1);
    let value = format!("0x{:02X}{:02X}{:02X}", avg(0), avg(1), avg(2));
    Output {
        bytes: serde_json::to_vec(&json!({ "RGB": value })).unwrap_or_default(),
        format: None,
    }
}
