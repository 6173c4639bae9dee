use super::*;
use crate::pipeline::resize;
use crate::spec::Styles;

fn spec(text: &str) -> Spec {
    Spec::parse(text, &Styles::default()).unwrap()
}

/// Runs the search over a score curve, counting trials.
fn run(start: u8, target: f64, curve: impl Fn(u8) -> f64) -> (Found, Vec<u8>) {
    let mut asked = vec![];
    let found = search(start, target, |q| {
        asked.push(q);
        // Bytes grow with quality, as they do.
        Ok((vec![0; usize::from(q) * 10], curve(q)))
    })
    .unwrap();
    (found, asked)
}

#[test]
fn the_search_finds_the_smallest_passing_quality_within_the_bound() {
    type Curve = (&'static str, fn(u8) -> f64);
    let curves: [Curve; 4] = [
        ("linear", |q| f64::from(q)),
        ("concave", |q| 100.0 * (f64::from(q) / 100.0).sqrt()),
        ("steep", |q| f64::from(q).powi(3) / 10_000.0),
        // Not monotone below 90 (trials must still end and keep the smallest passing).
        ("noisy", |q| match q {
            0..=90 if q % 3 == 0 => f64::from(q) + 4.0,
            0..=90 => f64::from(q) - 4.0,
            _ => f64::from(q),
        }),
    ];
    for (name, curve) in curves {
        for target in [30.0, 55.5, 70.0, 80.2, 90.0, 99.0] {
            for start in [50, 85, 88] {
                let (found, asked) = run(start, target, curve);
                assert!(
                    asked.len() <= MAX_TRIALS,
                    "{name} {target} {start}: {asked:?}"
                );
                assert_eq!(asked[0], start);
                assert!(found.reached, "{name} {target} {start}: {asked:?}");
                assert!(found.score >= target);
                // The smallest passing trial is the answer.
                let smallest = asked.iter().filter(|&&q| curve(q) >= target).min().unwrap();
                assert_eq!(
                    found.quality, *smallest,
                    "{name} {target} {start}: {asked:?}"
                );
                if name == "linear" {
                    // A straight curve is solved exactly.
                    assert_eq!(f64::from(found.quality), target.ceil(), "{asked:?}");
                }
            }
        }
    }
}

#[test]
fn an_unreachable_target_returns_the_highest_trial() {
    let (found, asked) = run(88, 95.0, |q| f64::from(q) * 0.8);
    assert!(!found.reached);
    assert_eq!(found.quality, 100);
    assert!(asked.len() <= MAX_TRIALS, "{asked:?}");
    // A target every quality reaches stops at quality 1.
    let (found, asked) = run(50, 10.0, |q| 20.0 + f64::from(q));
    assert_eq!((found.quality, found.reached), (1, true), "{asked:?}");
}

#[test]
fn only_lossy_stills_without_an_explicit_quality_search() {
    let settings = Settings {
        target_quality: Some(80),
        ..Settings::default()
    };
    assert_eq!(
        target_for(&spec("format,webp"), Format::Webp, &settings),
        Some(80.0)
    );
    for (text, format) in [
        ("format,webp@quality,Q_70", Format::Webp),
        ("format,heic@quality,q_70", Format::Heic),
        ("format,png", Format::Png),
        ("format,gif", Format::Gif),
    ] {
        assert_eq!(target_for(&spec(text), format, &settings), None, "{text}");
    }
    assert_eq!(
        target_for(&spec("format,webp"), Format::Webp, &Settings::default()),
        None
    );
}

/// A real photo: the smallest of Debian's lomiri wallpapers (scripts/setup-debian.sh
/// installs them for the tests), at 480 × 270. A made-up scene is no stand-in: its noise
/// made WebP miss the target at any quality, which a photo's texture does not.
fn photo() -> DynamicImage {
    let path = "/usr/share/backgrounds/Fossa_by_Jasper_Roks.jpg";
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (scripts/setup-debian.sh installs lomiri-wallpapers-20.04)")
    });
    let image = image::load_from_memory(&bytes).unwrap();
    resize::resample(DynamicImage::ImageRgb8(image.to_rgb8()), 480, 270).unwrap()
}

#[test]
fn a_real_photo_reaches_the_target_in_every_lossy_format() {
    let image = photo();
    let reference = Ssimulacra2Reference::new(&pixels(&to_scored(&image)).unwrap()).unwrap();
    for (format, start) in [
        (Format::Webp, 88),
        (Format::Heic, 50),
        (Format::Jpeg, 85),
        (Format::Avif, 80),
    ] {
        let request = EncodeRequest {
            format,
            quality: start,
            progressive: false,
            heic_preset: codec::DEFAULT_HEIC_PRESET,
            icc: None,
            exif: None,
        };
        let target = 75.0;
        let found = encode(image.clone(), &request, target).unwrap();
        assert!(
            found.reached && found.trials <= MAX_TRIALS,
            "{format:?}: {found:?}"
        );
        // Scored again from the bytes alone.
        let header = codec::probe(&found.bytes).unwrap();
        let decoded = codec::decode(&found.bytes, &header, DecodeRequest::default()).unwrap();
        let distorted = to_scored(&decoded.image);
        let score = reference.compare(&pixels(&distorted).unwrap()).unwrap();
        assert!(score >= target, "{format:?}: {score} at q{}", found.quality);
        assert_eq!(score, found.score);
    }
}

#[test]
fn the_search_counts_the_scorer_of_whole_images_and_of_strips() {
    // Whole: the reference pyramid and a comparison's planes, per pixel.
    let small = search_cost(Format::Webp, (900, 600), false);
    assert!(small >= 900 * 600 * (SCORE_BYTES_PER_PIXEL + 3));
    let uhd = search_cost(Format::Webp, (3840, 2160), false);
    assert!(uhd >= 3840 * 2160 * (SCORE_BYTES_PER_PIXEL + 3), "{uhd}");
    // Strips: the inputs' planes and one strip's buffers; less per pixel than whole.
    let (w, h) = (6028u64, 3391u64);
    let big = search_cost(Format::Webp, (w as u32, h as u32), false);
    assert!(
        big >= w * h * (STRIP_BYTES_PER_PIXEL + 3) + w * STRIP_BYTES_PER_COLUMN,
        "{big}"
    );
    assert!(big < w * h * SCORE_BYTES_PER_PIXEL, "{big}");
}

/// Issue 14: images over 8 MiP were scored resampled to 8 MiP, and their outputs landed 1.4
/// to 11 points below the target at full size. Strips score them at their own size.
#[test]
fn a_large_image_is_scored_at_its_own_size_in_strips() {
    let base = photo().to_rgb8();
    // 3200 × 2700 (8.6 MP, just over the bound) from the photo, enlarged, and a noisy copy.
    let large = resize::resample(DynamicImage::ImageRgb8(base), 3200, 2700)
        .unwrap()
        .into_rgb8();
    let mut noise = 7u32;
    let distorted = RgbImage::from_fn(3200, 2700, |x, y| {
        noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let image::Rgb([r, g, b]) = *large.get_pixel(x, y);
        let n = (noise >> 29) as u8;
        image::Rgb([r.saturating_add(n), g, b.saturating_sub(n)])
    });
    let image = DynamicImage::ImageRgb8(large.clone());
    let scorer = Scorer::new(&image).unwrap();
    assert!(matches!(scorer, Scorer::Strips(_)));
    let strips = scorer.score(&distorted).unwrap();
    let whole = Ssimulacra2Reference::new(&pixels(&large).unwrap())
        .unwrap()
        .compare(&pixels(&distorted).unwrap())
        .unwrap();
    assert!(
        (strips - whole).abs() < 2.5 && strips < 95.0,
        "strips {strips}, whole {whole}"
    );
}

#[test]
fn the_target_keys_the_disk_cache_and_its_absence_keeps_old_keys() {
    let plain = Settings::default();
    let searched = Settings {
        target_quality: Some(80),
        ..Settings::default()
    };
    assert_ne!(plain.fingerprint(), searched.fingerprint());
    // A change of the scorer or its bound (REVISION) changes the keys of searched outputs.
    assert!(searched
        .fingerprint()
        .ends_with(&format!("target ssimulacra2 80 search {REVISION}")));
    assert!(!plain.fingerprint().contains("target"));
}
