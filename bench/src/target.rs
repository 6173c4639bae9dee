//! `--target-quality` (issue 14): bytes and time of the fixed default quality against the
//! per-image search, at equal minimum score. For each format and size, S is the lowest
//! SSIMULACRA2 the default reached over the photos (rounded up: targets are whole numbers);
//! the search then runs with `--target-quality S`, so both sides meet the same worst case.

use imgfs::pipeline::{self, Settings};
use imgfs::spec::{Spec, Styles};

use crate::encode::big_settings;
use crate::score::{self, Photo};
use crate::util::{bytes, ratio, secs, time, Res, Table};
use crate::Bench;

/// One conversion: (seconds, output bytes, SSIMULACRA2 as the tables score it).
fn convert(p: &Photo, spec: &str, settings: &Settings) -> Res<(f64, u64, f64)> {
    let source = p.bytes()?;
    let spec = Spec::parse(spec, &Styles::default()).map_err(|e| e.to_string())?;
    let (t, out) =
        time(|| pipeline::convert(&source, &Default::default(), &spec, settings).map_err(|e| e.to_string()))?;
    let (s, _) = score::score(p, &out.bytes)?;
    Ok((t, out.bytes.len() as u64, s))
}

pub fn target(b: &Bench) -> Res<Vec<Table>> {
    let mut t = Table::new(
        "Target quality: fixed default quality vs `--target-quality S` (S = the default's lowest score)",
        vec![
            "spec",
            "photo",
            "default bytes",
            "SSIM2",
            "time",
            "S",
            "target bytes",
            "SSIM2",
            "time",
            "bytes target/default",
            "time target/default",
        ],
    );
    let mut summary = vec![];
    // Web sizes first: the full-size rows take minutes (scoring 20 MP outputs).
    for spec in ["resize,l_900@format,webp", "resize,l_900@format,heic", "format,webp", "format,heic"] {
        let fixed = big_settings();
        let mut rows = vec![];
        for p in &b.photos {
            rows.push(convert(p, spec, &fixed)?);
            eprintln!("  target {spec} {} default: done", p.name);
        }
        let s = rows.iter().map(|r| r.2).fold(f64::INFINITY, f64::min).ceil().clamp(30.0, 100.0) as u8;
        let searched = Settings { target_quality: Some(s), ..big_settings() };
        let (mut sum_fixed, mut sum_target, mut t_fixed, mut t_target) = (0, 0, 0.0, 0.0);
        let mut min_target = f64::INFINITY;
        for (p, (tf, bf, sf)) in b.photos.iter().zip(rows) {
            let (tt, bt, st) = convert(p, spec, &searched)?;
            eprintln!("  target {spec} {}: S {s}, bytes {bf} -> {bt}, SSIM2 {sf:.1} -> {st:.1}, time {tf:.2} -> {tt:.2} s", p.name);
            t.rows.push(vec![
                format!("`{spec}`"),
                p.name.clone(),
                bytes(bf),
                format!("{sf:.1}"),
                secs(tf),
                s.to_string(),
                bytes(bt),
                format!("{st:.1}"),
                secs(tt),
                ratio(bt as f64, bf as f64),
                ratio(tt, tf),
            ]);
            (sum_fixed, sum_target, t_fixed, t_target) =
                (sum_fixed + bf, sum_target + bt, t_fixed + tf, t_target + tt);
            min_target = min_target.min(st);
            p.forget();
        }
        eprintln!("  target {spec}: bytes {sum_target}/{sum_fixed}, time {t_target:.2}/{t_fixed:.2} s, lowest {min_target:.1}");
        summary.push(format!(
            "`{spec}`: S {s}, bytes {} of the default's, time {}, lowest score {min_target:.1}",
            ratio(sum_target as f64, sum_fixed as f64),
            ratio(t_target, t_fixed)
        ));
    }
    t.note = format!(
        "Library calls (`imgfs::pipeline::convert`), one run each, in this process; full-size outputs with the 100 MP output limit. SSIM2 as every table scores it (against the source resized by the image crate); the search scores against the pixels handed to the encoder, resampled to at most {} pixels. Totals over the photos: {}.",
        pipeline::target::SCORE_MAX_PIXELS,
        summary.join("; ")
    );
    Ok(vec![t])
}
