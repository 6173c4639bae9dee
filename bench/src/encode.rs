//! Encoding cases: imgfs against vipsthumbnail, heif-enc and cwebp; default qualities;
//! the x265 preset curve (through heif-enc's `-p preset=X`).

use std::path::{Path, PathBuf};
use std::process::Command;

use imgfs::pipeline::{self, codec, Settings};
use imgfs::spec::{Spec, Styles};

use crate::score::{self, Photo};
use crate::util::{bytes, file_len, median, ratio, run_cpu, secs, time, Res, Table};
use crate::Bench;

/// Lifts the 16.7 MP output limit (OSS's, for resize) so full-size outputs of 20 MP work.
pub const BIG: [&str; 2] = ["--max-output-pixels", "100000000"];

pub fn big_settings() -> Settings {
    let mut settings = Settings::default();
    settings.limits.max_output_pixels = 100_000_000;
    settings
}

/// One side of a duel: how to run it and where it writes.
struct Side<'a> {
    out: PathBuf,
    cmd: Box<dyn Fn() -> Command + 'a>,
}

struct Duel {
    imgfs: Vec<f64>,
    reference: Vec<f64>,
    /// CPU seconds of each run.
    cpu: (Vec<f64>, Vec<f64>),
    library: Vec<f64>,
    bytes: (u64, u64),
    score: (f64, f64),
    size: ((u32, u32), (u32, u32)),
    /// Whether the library call wrote the same bytes as the process.
    lib_same: Option<bool>,
}

/// Runs imgfs and the reference alternately `b.reps` times (and the library call, when a
/// spec is given), then scores the two outputs.
fn duel(b: &Bench, photo: &Photo, imgfs: Side, reference: Side, lib: Option<&str>) -> Res<Duel> {
    let source = photo.bytes()?;
    let settings = big_settings();
    let spec = lib.map(|s| Spec::parse(s, &Styles::default()).map_err(|e| e.to_string())).transpose()?;
    let mut d = Duel {
        imgfs: vec![],
        reference: vec![],
        cpu: (vec![], vec![]),
        library: vec![],
        bytes: (0, 0),
        score: (0.0, 0.0),
        size: ((0, 0), (0, 0)),
        lib_same: None,
    };
    let mut lib_bytes = None;
    for _ in 0..b.reps {
        let (wall, cpu) = run_cpu(&mut (imgfs.cmd)())?;
        d.imgfs.push(wall);
        d.cpu.0.push(cpu);
        let (wall, cpu) = run_cpu(&mut (reference.cmd)())?;
        d.reference.push(wall);
        d.cpu.1.push(cpu);
        if let Some(spec) = &spec {
            let (t, out) = time(|| {
                pipeline::convert(&source, &Default::default(), spec, &settings).map_err(|e| e.to_string())
            })?;
            d.library.push(t);
            lib_bytes = Some(out.bytes);
        }
    }
    let (a, b_) = (read(&imgfs.out)?, read(&reference.out)?);
    d.lib_same = lib_bytes.map(|lib| lib == a);
    let (sa, za) = score::score(photo, &a)?;
    let (sb, zb) = score::score(photo, &b_)?;
    for (who, s) in [("imgfs", sa), ("reference", sb)] {
        if s.is_nan() || s <= 30.0 {
            return Err(format!("{}: {who} output scores SSIMULACRA2 {s:.1}: broken?", photo.name));
        }
    }
    d.bytes = (file_len(&imgfs.out)?, file_len(&reference.out)?);
    d.score = (sa, sb);
    d.size = (za, zb);
    Ok(d)
}

fn read(path: &Path) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn photo_cell(p: &Photo) -> String {
    format!("{} ({}×{}, {:.1} MP)", p.name, p.width, p.height, p.megapixels())
}

fn imgfs_convert<'a>(b: &'a Bench, p: &'a Photo, spec: String, out: &Path, big: bool) -> Side<'a> {
    let out_c = out.to_path_buf();
    Side {
        out: out.to_path_buf(),
        cmd: Box::new(move || {
            let mut c = Command::new(&b.imgfs);
            c.arg("convert").arg(&p.path).arg(&spec).arg("-o").arg(&out_c);
            if big {
                c.args(BIG);
            }
            c
        }),
    }
}

fn external<'a>(out: PathBuf, make: impl Fn(&Path) -> Command + 'a) -> Side<'a> {
    let o = out.clone();
    Side { out, cmd: Box::new(move || make(&o)) }
}

fn duel_row(p: &Photo, d: &Duel, with_lib: bool) -> Vec<String> {
    let (ti, tr) = (median(&d.imgfs), median(&d.reference));
    let mut row = vec![photo_cell(p), secs(ti)];
    if with_lib {
        row.push(secs(median(&d.library)));
    }
    let size = |(w, h): (u32, u32)| format!("{w}×{h}");
    row.extend([
        secs(tr),
        ratio(ti, tr),
        ratio(median(&d.cpu.0), median(&d.cpu.1)),
        bytes(d.bytes.0),
        bytes(d.bytes.1),
        ratio(d.bytes.0 as f64, d.bytes.1 as f64),
        format!("{:.1}", d.score.0),
        format!("{:.1}", d.score.1),
        if d.size.0 == d.size.1 {
            size(d.size.0)
        } else {
            format!("{} / {}", size(d.size.0), size(d.size.1))
        },
    ]);
    row
}

/// Resize to 900 px longest side + WebP M6 / HEIF, against vipsthumbnail.
pub fn resize(b: &Bench) -> Res<Vec<Table>> {
    let mut tables = vec![];
    for (fmt, q, vips_opts) in [
        ("webp", b.webp_q, format!("[Q={},effort=6]", b.webp_q)),
        ("heic", b.heic_q, format!("[Q={}]", b.heic_q)),
    ] {
        let spec = format!("resize,l_900@format,{fmt}@quality,Q_{q}");
        let mut t = Table::new(
            format!("Resize to 900 px + {} Q{q}: `imgfs convert` vs `vipsthumbnail --size 900x900 -o out.{fmt}{vips_opts}`", fmt.to_uppercase()),
            vec!["photo", "imgfs (process)", "imgfs (library)", "vipsthumbnail", "time imgfs/vips", "CPU imgfs/vips", "imgfs bytes", "vips bytes", "bytes imgfs/vips", "SSIM2 imgfs", "SSIM2 vips", "output size (imgfs / vips)"],
        );
        t.note = format!("imgfs spec `{spec}`; process times are whole processes' wall time (exec, read, decode, resize, encode, write); library = `imgfs::pipeline::convert` in this process. Medians of {} alternated runs.", b.reps);
        let mut differ = vec![];
        for p in &b.photos {
            let stem = p.name.trim_end_matches(".jpg");
            let mine = b.work.join(format!("out/imgfs-900-{stem}.{fmt}"));
            let theirs = b.work.join(format!("out/vips-900-{stem}.{fmt}"));
            let opts = vips_opts.clone();
            let vips = external(theirs, move |o| {
                let mut c = Command::new("vipsthumbnail");
                c.arg(&p.path).args(["--size", "900x900", "-o"]);
                c.arg(format!("{}{opts}", o.display()));
                c
            });
            let d = duel(b, p, imgfs_convert(b, p, spec.clone(), &mine, false), vips, Some(&spec))?;
            if d.lib_same == Some(false) {
                differ.push(p.name.clone());
            }
            t.rows.push(duel_row(p, &d, true));
            eprintln!("  resize {fmt} {}: done", p.name);
        }
        t.note += &if differ.is_empty() {
            " Library and process outputs are byte-identical.".to_string()
        } else {
            format!(" Library output differs from the process's for: {}.", differ.join(", "))
        };
        tables.push(t);
    }
    Ok(tables)
}

/// Full-size HEIF vs heif-enc and full-size WebP M6 vs cwebp, same quality number.
pub fn full(b: &Bench) -> Res<Vec<Table>> {
    let mut tables = vec![];
    for fmt in ["heic", "webp"] {
        let (q, tool) = match fmt {
            "heic" => (b.heic_q, format!("heif-enc -q {}", b.heic_q)),
            _ => (b.webp_q, format!("cwebp -m 6 -mt -q {}", b.webp_q)),
        };
        let spec = format!("format,{fmt}@quality,Q_{q}");
        let mut t = Table::new(
            format!("Full size {} Q{q}: `imgfs convert` vs `{tool}`", fmt.to_uppercase()),
            vec![
                "photo",
                "imgfs",
                "reference",
                "time imgfs/ref",
                "CPU imgfs/ref",
                "imgfs bytes",
                "ref bytes",
                "bytes imgfs/ref",
                "SSIM2 imgfs",
                "SSIM2 ref",
                "output size",
            ],
        );
        t.note = format!("imgfs spec `{spec}` with `{}` (the default output limit, 16,777,216 px, rejects full-size outputs of larger photos). Whole-process wall times; CPU = user + sys seconds of the process. Medians of {} alternated runs.", BIG.join(" "), b.reps);
        for p in &b.photos {
            let stem = p.name.trim_end_matches(".jpg");
            let mine = b.work.join(format!("out/imgfs-full-{stem}.{fmt}"));
            let theirs = b.work.join(format!("out/ref-full-{stem}.{fmt}"));
            let reference = external(theirs, move |o| {
                let mut c;
                if fmt == "heic" {
                    c = Command::new("heif-enc");
                    c.args(["-q", &q.to_string()]).arg(&p.path).arg("-o").arg(o);
                } else {
                    c = Command::new("cwebp");
                    c.args(["-m", "6", "-mt", "-q", &q.to_string()]).arg(&p.path).arg("-o").arg(o);
                }
                c
            });
            let d = duel(b, p, imgfs_convert(b, p, spec.clone(), &mine, true), reference, None)?;
            t.rows.push(duel_row(p, &d, false));
            eprintln!("  full {fmt} {}: done", p.name);
        }
        tables.push(t);
    }
    Ok(tables)
}

/// Bytes and SSIMULACRA2 of each lossy format at imgfs's default quality (no quality op).
pub fn defaults(b: &Bench) -> Res<Vec<Table>> {
    let settings = big_settings();
    let mut t = Table::new(
        "Default qualities (no `quality` op), full size, library",
        vec!["photo", "format", "default Q", "bytes", "bits/pixel", "SSIM2", "time"],
    );
    let mut sums: Vec<(String, f64, usize)> = vec![];
    for p in &b.photos {
        let source = p.bytes()?;
        for fmt in ["jpg", "webp", "heic", "avif"] {
            let spec =
                Spec::parse(&format!("format,{fmt}"), &Styles::default()).map_err(|e| e.to_string())?;
            let format = spec.format.unwrap();
            let (t_conv, out) = time(|| {
                pipeline::convert(&source, &Default::default(), &spec, &settings).map_err(|e| e.to_string())
            })?;
            let (s, _) = score::score(p, &out.bytes)?;
            let bpp = out.bytes.len() as f64 * 8.0 / (f64::from(p.width) * f64::from(p.height));
            t.rows.push(vec![
                p.name.clone(),
                fmt.into(),
                settings.qualities.of(format).to_string(),
                bytes(out.bytes.len() as u64),
                format!("{bpp:.3}"),
                format!("{s:.1}"),
                secs(t_conv),
            ]);
            match sums.iter_mut().find(|(f, ..)| f == fmt) {
                Some(e) => {
                    e.1 += s;
                    e.2 += 1;
                }
                None => sums.push((fmt.into(), s, 1)),
            }
        }
        eprintln!("  defaults {}: done", p.name);
    }
    let means: Vec<String> = sums.iter().map(|(f, s, n)| format!("{f} {:.1}", s / *n as f64)).collect();
    t.note = format!("Mean SSIMULACRA2 per format: {} (target ≈ 80).", means.join(", "));
    Ok(vec![t])
}

/// x265 presets through heif-enc on one ~12 MP photo, round-robin, plus imgfs (medium); then,
/// per preset, the quality number that reaches the base preset's score and the bytes there.
pub fn presets(b: &Bench) -> Res<Vec<Table>> {
    let p = b.preset_photo.as_ref().ok_or("no photo for the preset curve")?;
    let q = b.heic_q;
    let presets: &[&str] = if b.smoke {
        &["ultrafast", "medium"]
    } else {
        &["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]
    };
    let heif_enc = |preset: &'static str, q: u8, out: PathBuf| {
        external(out, move |o| {
            let mut c = Command::new("heif-enc");
            c.args(["-q", &q.to_string(), "-p", &format!("preset={preset}")]).arg(&p.path).arg("-o").arg(o);
            c
        })
    };
    let mut sides: Vec<(String, Option<&str>, Side)> = presets
        .iter()
        .map(|&pr| {
            let out = b.work.join(format!("out/preset-{pr}.heic"));
            (format!("heif-enc preset={pr}"), Some(pr), heif_enc(pr, q, out))
        })
        .collect();
    let mine = b.work.join("out/preset-imgfs.heic");
    let spec = format!("format,heic@quality,Q_{q}");
    let preset = codec::x265_preset(codec::DEFAULT_HEIC_PRESET, (p.width, p.height));
    let label = format!("imgfs (libheif 1.23, default preset {} = {preset})", codec::DEFAULT_HEIC_PRESET);
    sides.push((label, None, imgfs_convert(b, p, spec, &mine, true)));
    let (mut wall, mut cpu) = (vec![vec![]; sides.len()], vec![vec![]; sides.len()]);
    for _ in 0..b.reps {
        for (i, (.., side)) in sides.iter().enumerate() {
            let (w, c) = run_cpu(&mut (side.cmd)())?;
            wall[i].push(w);
            cpu[i].push(c);
        }
    }
    // (label, preset, wall, cpu, bytes, score)
    let mut rows = vec![];
    for (i, (label, preset, side)) in sides.iter().enumerate() {
        let (s, _) = score::score(p, &read(&side.out)?)?;
        rows.push((label.clone(), *preset, median(&wall[i]), median(&cpu[i]), file_len(&side.out)?, s));
    }
    let base_preset = if presets.contains(&"slow") { "slow" } else { "medium" };
    let base = rows.iter().find(|r| r.1 == Some(base_preset)).cloned().unwrap();
    let mut t = Table::new(
        format!("x265 presets, full-size HEIF q{q} on {}", photo_cell(p)),
        vec![
            "encoder",
            "wall",
            "wall / base",
            "CPU",
            "CPU / base",
            "bytes",
            "bytes / base",
            "SSIM2",
            "meets target",
            "q at base's SSIM2",
            "bytes there / base",
        ],
    );
    // (output at q, (q at the base's score, (bytes there, score there)))
    type Searched = (Vec<u8>, (u8, (u64, f64)));
    let mut searched: Vec<Searched> = vec![];
    for (label, preset, w, c, len, s) in rows {
        let ok = w <= 0.5 * base.2 && len as f64 <= 1.1 * base.4 as f64 && s >= 0.9 * base.5;
        // Equal score: the smallest q whose score reaches the base's (scores rise with q).
        // Presets that wrote the same bytes at q share one search.
        let out_at_q = read(&b.work.join(format!("out/preset-{}.heic", preset.unwrap_or("-"))));
        let known = out_at_q.as_ref().ok().and_then(|o| searched.iter().find(|(x, _)| x == o));
        let equal = match (preset, known) {
            (Some(_), Some((_, found))) => Some(*found),
            (Some(pr), None) if pr != base_preset && !b.smoke => {
                let out = b.work.join(format!("out/search-{pr}.heic"));
                let probe = |q: u8| -> Res<(u64, f64)> {
                    run_cpu(&mut (heif_enc(pr, q, out.clone()).cmd)())?;
                    Ok((file_len(&out)?, score::score(p, &read(&out)?)?.0))
                };
                let found = equal_score(q, (len, s), base.5, probe)?;
                searched.push((out_at_q.clone()?, found));
                Some(found)
            }
            _ => None,
        };
        let (eq_q, eq_bytes) = match equal {
            Some((q2, (l2, s2))) => (format!("{q2} ({s2:.1})"), ratio(l2 as f64, base.4 as f64)),
            None => ("–".into(), "–".into()),
        };
        t.rows.push(vec![
            label,
            secs(w),
            ratio(w, base.2),
            secs(c),
            ratio(c, base.3),
            bytes(len),
            ratio(len as f64, base.4 as f64),
            format!("{s:.1}"),
            if ok { "yes" } else { "no" }.into(),
            eq_q,
            eq_bytes,
        ]);
    }
    t.note = format!(
        "Base = heif-enc preset={base_preset} (heif-enc's default is slow), SSIM2 {:.1}. Target: ≤ 0.5× base wall time, ≤ 1.1× base bytes, SSIM2 ≥ 0.9× base, all at the same q{q}; since a faster preset at the same q also scores lower, the last two columns compare at equal score: the smallest q (gallop then bisection; its SSIM2 in brackets) reaching the base's SSIM2 and the bytes there. CPU = user + sys seconds (less disturbed by other load than wall). Medians of {} round-robin runs. heif-enc is Debian's libheif 1.15; imgfs embeds libheif 1.23; both use Debian's x265 3.5.",
        base.5, b.reps
    );
    Ok(vec![t])
}

/// The smallest q whose SSIM2 reaches `target`, from a known (bytes, score) at `q`: gallop by
/// 2, 4, 8… to bracket it, then bisect. Returns (q, (bytes, score)) there.
fn equal_score(
    q: u8,
    at_q: (u64, f64),
    target: f64,
    mut probe: impl FnMut(u8) -> Res<(u64, f64)>,
) -> Res<(u8, (u64, f64))> {
    let (mut lo, mut hi) = ((q, at_q), (q, at_q));
    let mut step = 2;
    if at_q.1 >= target {
        while lo.1 .1 >= target && lo.0 > 1 {
            hi = lo;
            let t = q.saturating_sub(step).max(1);
            lo = (t, probe(t)?);
            step *= 2;
        }
    } else {
        while hi.1 .1 < target && hi.0 < 100 {
            lo = hi;
            let t = q.saturating_add(step).min(100);
            hi = (t, probe(t)?);
            step *= 2;
        }
    }
    while hi.0 - lo.0 > 1 {
        let mid = (lo.0 + hi.0) / 2;
        let r = (mid, probe(mid)?);
        if r.1 .1 >= target {
            hi = r
        } else {
            lo = r
        }
    }
    Ok(hi)
}
