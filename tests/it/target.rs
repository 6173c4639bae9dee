//! `--target-quality`: variants read through a real mount (root and `/dev/fuse`), and
//! `imgfs convert`, reach the target when decoded by independent decoders (dwebp,
//! heif-convert) and scored against the pixels imgfs encoded (its lossless PNG of them).

use std::path::Path;
use std::process::Command;

use fast_ssim2::{compute_ssimulacra2, PixelDescriptor, PixelSlice};
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

use crate::common::{bin, make_jpeg, run, Mount};

const TARGET: u8 = 70;

fn rgb(png: &Path) -> image::RgbImage {
    image::open(png).unwrap().to_rgb8()
}

fn pixels(image: &image::RgbImage) -> PixelSlice<'_> {
    let (w, h) = image.dimensions();
    PixelSlice::new(
        image.as_raw(),
        w,
        h,
        w as usize * 3,
        PixelDescriptor::RGB8_SRGB,
    )
    .unwrap()
}

/// SSIMULACRA2 of `variant` (decoded to PNG by Debian's own tools) against `reference`.
fn score(variant: &Path, reference: &Path, dir: &Path) -> f64 {
    let png = dir.join("decoded.png");
    let (v, p) = (variant.to_str().unwrap(), png.to_str().unwrap());
    match variant.extension().and_then(|e| e.to_str()) {
        Some("webp") => run("dwebp", &[v, "-o", p]),
        _ => run("heif-convert", &[v, p]),
    };
    let (reference, decoded) = (rgb(reference), rgb(&png));
    compute_ssimulacra2(&pixels(&reference), &pixels(&decoded)).unwrap()
}

/// The pixels imgfs hands the encoder for `spec` on `input`, as a lossless PNG.
fn reference(input: &Path, spec: &str, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("reference.png");
    let spec = match spec {
        "" => "format,png".to_string(),
        ops => format!("{ops}@format,png"),
    };
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    run(bin().to_str().unwrap(), &["convert", i, &spec, "-o", o]);
    out
}

#[test]
fn variants_through_a_mount_reach_the_target_score() {
    let settings = Settings {
        target_quality: Some(TARGET),
        ..Settings::default()
    };
    let options = MountOptions::default();
    let mount = Mount::with(options, settings, Styles::default(), |src| {
        make_jpeg(&src.join("photo.jpg"), 400, 267)
    });
    let work = tempfile::tempdir().unwrap();
    for (spec, ext) in [
        ("format,webp", "webp"),
        ("resize,w_300@format,heic", "heic"),
    ] {
        let variant = work.path().join(format!("variant.{ext}"));
        std::fs::copy(mount.path(&format!("photo.jpg@{spec}")), &variant).unwrap();
        let ops = spec.rsplit_once('@').map_or("", |(ops, _)| ops);
        let reference = reference(&mount.source.join("photo.jpg"), ops, work.path());
        let s = score(&variant, &reference, work.path());
        assert!(s >= f64::from(TARGET), "{spec}: SSIMULACRA2 {s}");
    }
}

#[test]
fn convert_takes_the_option_and_checks_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jpg");
    make_jpeg(&input, 400, 267);
    let convert = |extra: &[&str], out: &Path| {
        Command::new(bin())
            .args(["convert", input.to_str().unwrap(), "format,webp", "-o"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    let (fixed, searched) = (dir.path().join("fixed.webp"), dir.path().join("t.webp"));
    assert!(convert(&[], &fixed).status.success());
    assert!(convert(&["--target-quality", "70"], &searched)
        .status
        .success());
    let reference = reference(&input, "", dir.path());
    let s = score(&searched, &reference, dir.path());
    assert!(s >= 70.0, "SSIMULACRA2 {s}");
    // The default (88) scores higher on this image; the search takes what 70 allows.
    assert!(std::fs::metadata(&searched).unwrap().len() < std::fs::metadata(&fixed).unwrap().len());
    let out = convert(&["--target-quality", "20"], &dir.path().join("x.webp"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("30..=100"),
        "{out:?}"
    );
}
