//! What EXIF an output carries. The policy (`--metadata auto|keep|strip`) decides per output
//! whether the source's EXIF goes along; what goes is rewritten from the parsed fields of the
//! primary image (IFD0 with its Exif, GPS and Interop directories), so the thumbnail (IFD1),
//! the MakerNote and other private blocks never travel, and bytes that do not parse are
//! dropped, never copied. ICC profiles are not decided here: they define the colours, and
//! every output that can hold one keeps it.

use std::collections::HashSet;
use std::io::Cursor;

use exif::experimental::Writer;
use exif::{Context, Field, In, Reader, Tag, Value};

use crate::limits::MAX_EXIF_BYTES;

/// Which outputs carry the source's EXIF (docs/benchmarks.md, "Metadata").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Metadata {
    /// Outputs of the source's full size keep its EXIF (dates, GPS, camera); resized,
    /// cropped or turned ones, which are thumbnails and web images, keep only Copyright.
    #[default]
    Auto,
    /// Every output keeps the source's EXIF.
    Keep,
    /// Every output keeps only Copyright.
    Strip,
}

impl Metadata {
    pub fn name(self) -> &'static str {
        match self {
            Metadata::Auto => "auto",
            Metadata::Keep => "keep",
            Metadata::Strip => "strip",
        }
    }

    /// Whether an output of `output` pixels keeps all of the EXIF of a source whose upright
    /// size is `source`. Dimensions decide rather than the operations: a resize that does
    /// not enlarge a smaller photo, or a watermark, still gives the photo itself.
    pub fn keeps(self, source: (u32, u32), output: (u32, u32)) -> bool {
        match self {
            Metadata::Keep => true,
            Metadata::Strip => false,
            Metadata::Auto => source == output,
        }
    }
}

/// An output as the rewrite needs to know it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    /// The source's size as a person sees it (after orientation, if the pixels were turned).
    pub source: (u32, u32),
    /// The output's pixel dimensions.
    pub size: (u32, u32),
    /// Whether the pixels were turned upright, so a viewer must not turn them again.
    pub upright: bool,
}

/// Private or structural blocks that are never carried: maker notes (often most of a
/// camera's EXIF, and they hold offsets into the source), Epson's PrintIM, Microsoft's
/// Padding and OffsetSchema, DNG's private data, and SubIFDs (offsets of images not copied).
const NEVER: [Tag; 7] = [
    Tag::MakerNote,
    Tag(Context::Tiff, 0xc4a5), // PrintIM
    Tag(Context::Tiff, 0xea1c), // Padding
    Tag(Context::Exif, 0xea1c), // Padding
    Tag(Context::Exif, 0xea1d), // OffsetSchema
    Tag(Context::Tiff, 0xc634), // DNGPrivateData
    Tag(Context::Tiff, 0x014a), // SubIFDs
];

/// The EXIF (raw TIFF) that `target` carries from the source's `exif`, or None. A rights
/// notice stays with every copy (as imgproxy keeps it): stripped outputs keep Copyright.
pub(super) fn carried(exif: &[u8], policy: Metadata, target: &Target) -> Option<Vec<u8>> {
    if exif.len() > MAX_EXIF_BYTES {
        tracing::info!(
            "EXIF of {} bytes dropped: the limit is {MAX_EXIF_BYTES}",
            exif.len()
        );
        return None;
    }
    let all = policy.keeps(target.source, target.size);
    // Fields that parse are kept even if others do not: one bad entry in a phone's EXIF
    // should not cost the photo its date.
    let parsed = match Reader::new()
        .continue_on_error(true)
        .read_raw(exif.to_vec())
    {
        Ok(parsed) => parsed,
        Err(e) => match e.distill_partial_result(|errors| {
            tracing::debug!("EXIF: {} entries dropped: {errors:?}", errors.len())
        }) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::debug!("EXIF dropped, it does not parse: {e}");
                return None;
            }
        },
    };
    let mut fields: Vec<Field> = Vec::new();
    let mut tags = HashSet::new();
    for field in parsed.fields() {
        let wanted = field.ifd_num == In::PRIMARY
            && !matches!(field.value, Value::Unknown(..))
            && !NEVER.contains(&field.tag)
            && (all || field.tag == Tag::Copyright)
            // A damaged file may repeat a tag; a writer must not.
            && tags.insert(field.tag);
        if wanted {
            fields.push(adjusted(field.clone(), target));
        }
    }
    if fields.is_empty() {
        return None;
    }
    let mut writer = Writer::new();
    for field in &fields {
        writer.push_field(field);
    }
    let mut out = Cursor::new(Vec::new());
    match writer.write(&mut out, parsed.little_endian()) {
        Ok(()) => Some(out.into_inner()),
        Err(e) => {
            tracing::debug!("EXIF dropped, it cannot be rewritten: {e}");
            None
        }
    }
}

/// The fields that describe the pixels, made true of the output's.
fn adjusted(mut field: Field, target: &Target) -> Field {
    let dimension = match field.tag {
        // The pixels are upright now: a viewer must not turn them again.
        Tag::Orientation if target.upright => {
            field.value = Value::Short(vec![1]);
            return field;
        }
        Tag::PixelXDimension => target.size.0,
        Tag::PixelYDimension => target.size.1,
        _ => return field,
    };
    field.value = match u16::try_from(dimension) {
        Ok(short) if matches!(field.value, Value::Short(_)) => Value::Short(vec![short]),
        _ => Value::Long(vec![dimension]),
    };
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(tag: Tag, ifd: In, value: Value) -> Field {
        Field {
            tag,
            ifd_num: ifd,
            value,
        }
    }

    fn ascii(text: &str) -> Value {
        Value::Ascii(vec![text.as_bytes().to_vec()])
    }

    /// A camera's EXIF: make, date, GPS, orientation, a 6 KB maker note, PrintIM, and a
    /// JPEG thumbnail in IFD1.
    fn camera_exif() -> Vec<u8> {
        let fields = [
            field(Tag::Make, In::PRIMARY, ascii("Camera")),
            field(Tag::Copyright, In::PRIMARY, ascii("(c) Someone")),
            field(Tag::Orientation, In::PRIMARY, Value::Short(vec![6])),
            field(
                Tag(Context::Tiff, 0xc4a5),
                In::PRIMARY,
                Value::Undefined(vec![7; 900], 0),
            ),
            field(
                Tag::DateTimeOriginal,
                In::PRIMARY,
                ascii("2024:05:01 10:20:30"),
            ),
            field(Tag::PixelXDimension, In::PRIMARY, Value::Short(vec![4000])),
            field(Tag::PixelYDimension, In::PRIMARY, Value::Short(vec![3000])),
            field(
                Tag::MakerNote,
                In::PRIMARY,
                Value::Undefined(vec![9; 6000], 0),
            ),
            field(Tag::GPSLatitudeRef, In::PRIMARY, ascii("N")),
            field(
                Tag::GPSLatitude,
                In::PRIMARY,
                Value::Rational(vec![(48, 1).into(), (8, 1).into(), (0, 1).into()]),
            ),
            field(Tag::Compression, In::THUMBNAIL, Value::Short(vec![6])),
        ];
        let thumbnail = [0xFF, 0xD8, 0xFF, 0xDB].repeat(2000);
        let mut writer = Writer::new();
        for f in &fields {
            writer.push_field(f);
        }
        writer.set_jpeg(&thumbnail, In::THUMBNAIL);
        let mut out = Cursor::new(Vec::new());
        writer.write(&mut out, false).unwrap();
        out.into_inner()
    }

    const FULL: Target = Target {
        source: (4000, 3000),
        size: (4000, 3000),
        upright: false,
    };
    const RESIZED: Target = Target {
        source: (4000, 3000),
        size: (900, 675),
        upright: false,
    };

    fn parse(tiff: &[u8]) -> exif::Exif {
        Reader::new().read_raw(tiff.to_vec()).unwrap()
    }

    fn value(exif: &exif::Exif, tag: Tag) -> Option<String> {
        let field = exif.get_field(tag, In::PRIMARY)?;
        Some(field.display_value().to_string())
    }

    #[test]
    fn the_thumbnail_and_the_maker_note_never_travel() {
        let source = camera_exif();
        assert!(parse(&source)
            .get_field(Tag::MakerNote, In::PRIMARY)
            .is_some());
        assert!(parse(&source).fields().any(|f| f.ifd_num == In::THUMBNAIL));
        let out = carried(&source, Metadata::Keep, &FULL).unwrap();
        let kept = parse(&out);
        assert!(kept.fields().all(|f| f.ifd_num == In::PRIMARY));
        assert!(kept.get_field(Tag::MakerNote, In::PRIMARY).is_none());
        assert!(kept
            .get_field(Tag(Context::Tiff, 0xc4a5), In::PRIMARY)
            .is_none());
        // 8 KB of thumbnail, 6 KB of maker note and 900 bytes of PrintIM are gone.
        assert!(source.len() > 14_900 && out.len() < 400, "{}", out.len());
    }

    #[test]
    fn dates_gps_and_camera_are_kept() {
        let kept = parse(&carried(&camera_exif(), Metadata::Keep, &FULL).unwrap());
        assert_eq!(
            value(&kept, Tag::DateTimeOriginal).as_deref(),
            Some("2024-05-01 10:20:30")
        );
        assert_eq!(value(&kept, Tag::GPSLatitudeRef).as_deref(), Some("N"));
        assert!(kept.get_field(Tag::GPSLatitude, In::PRIMARY).is_some());
        assert_eq!(value(&kept, Tag::Make).as_deref(), Some("\"Camera\""));
        let orientation = kept.get_field(Tag::Orientation, In::PRIMARY).unwrap();
        assert_eq!(
            orientation.value.get_uint(0),
            Some(6),
            "not upright: as stored"
        );
        assert!(!kept.little_endian(), "the source's byte order");
    }

    #[test]
    fn upright_pixels_reset_the_orientation_and_sizes_follow_the_output() {
        let target = Target {
            upright: true,
            ..RESIZED
        };
        let kept = parse(&carried(&camera_exif(), Metadata::Keep, &target).unwrap());
        let get = |tag| kept.get_field(tag, In::PRIMARY).unwrap().value.get_uint(0);
        assert_eq!(get(Tag::Orientation), Some(1));
        assert_eq!(get(Tag::PixelXDimension), Some(900));
        assert_eq!(get(Tag::PixelYDimension), Some(675));
    }

    #[test]
    fn stripped_outputs_keep_only_the_copyright() {
        for (policy, target) in [(Metadata::Strip, FULL), (Metadata::Auto, RESIZED)] {
            let kept = parse(&carried(&camera_exif(), policy, &target).unwrap());
            let tags: Vec<Tag> = kept.fields().map(|f| f.tag).collect();
            assert_eq!(tags, [Tag::Copyright], "{policy:?}");
        }
        let without = carried(&camera_exif(), Metadata::Keep, &FULL).unwrap();
        let no_copyright: Vec<Field> = parse(&without)
            .fields()
            .filter(|f| f.tag != Tag::Copyright)
            .cloned()
            .collect();
        let mut writer = Writer::new();
        no_copyright.iter().for_each(|f| writer.push_field(f));
        let mut out = Cursor::new(Vec::new());
        writer.write(&mut out, true).unwrap();
        assert_eq!(carried(out.get_ref(), Metadata::Strip, &FULL), None);
    }

    #[test]
    fn garbage_is_dropped_not_copied() {
        assert_eq!(carried(b"", Metadata::Keep, &FULL), None);
        assert_eq!(carried(&[0x42; 300], Metadata::Keep, &FULL), None);
        // A TIFF header whose first directory lies beyond the end.
        assert_eq!(
            carried(b"MM\0\x2a\0\0\xff\xff", Metadata::Keep, &FULL),
            None
        );
    }

    #[test]
    fn a_damaged_entry_costs_only_itself() {
        let mut source = camera_exif();
        // IFD0's first entry (Make) points past the end of the data.
        let first_value = 8 + 2 + 8;
        source[first_value..first_value + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        let kept = parse(&carried(&source, Metadata::Keep, &FULL).unwrap());
        assert!(kept.get_field(Tag::Make, In::PRIMARY).is_none());
        assert!(kept.get_field(Tag::DateTimeOriginal, In::PRIMARY).is_some());
    }

    /// The disk cache keys entries by the fingerprint: one policy's bytes never serve another.
    #[test]
    fn each_policy_has_its_own_fingerprint() {
        let print = |metadata| {
            let settings = crate::pipeline::Settings {
                metadata,
                ..Default::default()
            };
            settings.fingerprint()
        };
        let prints = [Metadata::Auto, Metadata::Keep, Metadata::Strip].map(print);
        assert!(prints[0] != prints[1] && prints[1] != prints[2] && prints[0] != prints[2]);
    }

    #[test]
    fn auto_keeps_the_full_size_only() {
        let policy = Metadata::Auto;
        assert!(policy.keeps((4000, 3000), (4000, 3000)));
        assert!(!policy.keeps((4000, 3000), (900, 675)));
        assert!(!policy.keeps((4000, 3000), (3000, 4000)), "turned by 90°");
        assert!(!policy.keeps((4000, 3000), (4000, 2000)), "cropped");
        assert!(Metadata::Keep.keeps((4000, 3000), (90, 67)));
        assert!(!Metadata::Strip.keeps((4000, 3000), (4000, 3000)));
        assert_eq!(Metadata::default(), Metadata::Auto);
    }
}
