//! What EXIF outputs carry under each `--metadata` policy, read through a real mount (root
//! and `/dev/fuse`) and checked by exiftool, an independent reader. The source is a camera's
//! JPEG made here: date, GPS, make, an EXIF thumbnail and a maker note.

use std::path::Path;

use crate::common::{make_jpeg, run, Mount, MAGICK};
use imgfs::options::MountOptions;
use imgfs::pipeline::{Metadata, Settings};
use imgfs::spec::Styles;

const DATE: &str = "2024:05:01 10:20:30";
const FORMATS: [&str; 3] = ["webp", "heic", "jpg"];

/// `camera.jpg` (600×400) with the tags a camera writes, a 160×107 EXIF thumbnail and a
/// 3,000-byte maker note; `signed.jpg`, the same with a Copyright.
fn make_camera_jpegs(src: &Path) {
    let camera = src.join("camera.jpg");
    make_jpeg(&camera, 600, 400);
    let dir = tempfile::tempdir().unwrap();
    let (thumb, note) = (dir.path().join("thumb.jpg"), dir.path().join("note.bin"));
    let camera = camera.to_str().unwrap();
    run(
        MAGICK,
        &[
            camera,
            "-strip",
            "-resize",
            "160x107",
            thumb.to_str().unwrap(),
        ],
    );
    std::fs::write(
        &note,
        (0..3000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    run(
        "exiftool",
        &[
            "-q",
            "-q",
            "-overwrite_original",
            "-Make=imgfs-camera",
            "-ExifImageWidth=600",
            "-ExifImageHeight=400",
            &format!("-DateTimeOriginal={DATE}"),
            "-GPSLatitude=48.137",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=11.575",
            "-GPSLongitudeRef=E",
            &format!("-ThumbnailImage<={}", thumb.display()),
            &format!("-MakerNotes<={}", note.display()),
            camera,
        ],
    );
    let signed = src.join("signed.jpg");
    std::fs::copy(camera, &signed).unwrap();
    let signed = signed.to_str().unwrap();
    run(
        "exiftool",
        &[
            "-q",
            "-q",
            "-overwrite_original",
            "-Copyright=(c) imgfs",
            signed,
        ],
    );
    // The fixture is what it says, to the same reader.
    assert_eq!(tag(Path::new(camera), "DateTimeOriginal"), DATE);
    assert!(tag(Path::new(camera), "ThumbnailImage").contains("Binary data"));
    assert!(tag(Path::new(camera), "MakerNotes").contains("Binary data 3000"));
}

fn mount(metadata: Metadata) -> Mount {
    let settings = Settings {
        metadata,
        ..Settings::default()
    };
    let options = MountOptions::default();
    Mount::with(options, settings, Styles::default(), make_camera_jpegs)
}

/// One tag as exiftool prints it (numbers as numbers), empty if the file has none.
fn tag(path: &Path, name: &str) -> String {
    let out = run(
        "exiftool",
        &["-s3", "-n", &format!("-{name}"), path.to_str().unwrap()],
    );
    String::from_utf8(out).unwrap().trim().to_string()
}

/// The bytes of the file's EXIF block.
fn exif_len(path: &Path) -> usize {
    run("exiftool", &["-b", "-EXIF", path.to_str().unwrap()]).len()
}

#[test]
fn full_size_outputs_keep_dates_and_gps() {
    let m = mount(Metadata::default());
    for format in FORMATS {
        let out = m.path(&format!("camera.jpg@format,{format}"));
        assert_eq!(tag(&out, "DateTimeOriginal"), DATE, "{format}");
        assert_eq!(tag(&out, "GPSLatitude"), "48.137", "{format}");
        assert_eq!(tag(&out, "GPSLongitude"), "11.575", "{format}");
        assert_eq!(tag(&out, "Make"), "imgfs-camera", "{format}");
    }
}

#[test]
fn resized_outputs_carry_no_exif_by_default() {
    let m = mount(Metadata::default());
    for format in FORMATS {
        let out = m.path(&format!("camera.jpg@resize,l_300@format,{format}"));
        assert_eq!(exif_len(&out), 0, "{format}");
        assert_eq!(tag(&out, "DateTimeOriginal"), "", "{format}");
    }
    // A crop is not the photo either.
    let cropped = m.path("camera.jpg@crop,w_100,h_100@format,webp");
    assert_eq!(exif_len(&cropped), 0);
}

#[test]
fn keep_metadata_keeps_exif_on_resized_outputs() {
    let m = mount(Metadata::Keep);
    for format in FORMATS {
        let out = m.path(&format!("camera.jpg@resize,l_300@format,{format}"));
        assert_eq!(tag(&out, "DateTimeOriginal"), DATE, "{format}");
        assert_eq!(tag(&out, "GPSLatitude"), "48.137", "{format}");
        // The sizes it states are the output's.
        assert_eq!(tag(&out, "ExifImageWidth"), "300", "{format}");
        assert_eq!(tag(&out, "ExifImageHeight"), "200", "{format}");
    }
}

#[test]
fn strip_metadata_strips_full_size_outputs() {
    let m = mount(Metadata::Strip);
    for format in FORMATS {
        let out = m.path(&format!("camera.jpg@format,{format}"));
        assert_eq!(exif_len(&out), 0, "{format}");
        assert_eq!(tag(&out, "GPSLatitude"), "", "{format}");
    }
    // The source itself is served as it is.
    assert_eq!(tag(&m.path("camera.jpg"), "DateTimeOriginal"), DATE);
}

#[test]
fn stripped_outputs_keep_only_the_copyright() {
    for (metadata, spec) in [
        (Metadata::Strip, "format,webp"),
        (Metadata::Auto, "resize,l_300@format,heic"),
    ] {
        let m = mount(metadata);
        let out = m.path(&format!("signed.jpg@{spec}"));
        assert_eq!(tag(&out, "Copyright"), "(c) imgfs", "{metadata:?}");
        assert_eq!(tag(&out, "DateTimeOriginal"), "", "{metadata:?}");
        assert_eq!(tag(&out, "GPSLatitude"), "", "{metadata:?}");
        assert_eq!(tag(&out, "Make"), "", "{metadata:?}");
    }
}

#[test]
fn no_output_carries_a_thumbnail_or_maker_notes() {
    let m = mount(Metadata::Keep);
    for format in FORMATS {
        for size in ["", "@resize,l_300"] {
            let out = m.path(&format!("camera.jpg{size}@format,{format}"));
            let what = format!("{format}{size}");
            assert_eq!(tag(&out, "DateTimeOriginal"), DATE, "{what}: EXIF kept");
            assert_eq!(tag(&out, "ThumbnailImage"), "", "{what}");
            assert_eq!(tag(&out, "ThumbnailLength"), "", "{what}");
            assert_eq!(tag(&out, "MakerNotes"), "", "{what}");
            // Date, GPS and the camera's tags fit in well under a kilobyte.
            assert!(exif_len(&out) < 1000, "{what}: {} bytes", exif_len(&out));
        }
    }
}
