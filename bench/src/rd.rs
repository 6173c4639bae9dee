//! Rate–distortion at equal quality (issue 14): quality sweeps of imgfs and of the reference
//! encoders (heif-enc, cwebp, avifenc, vipsthumbnail) on every photo, each output scored with
//! SSIMULACRA2 and DSSIM against the decoded source; then imgfs's bytes (and time) at the
//! reference's score, interpolated between the two imgfs steps that bracket it, per metric;
//! and the rate–distortion plots (plot.rs).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use imgfs::pipeline::Qualities;

use crate::encode::BIG;
use crate::plot::{self, Line};
use crate::score::{self, Photo, Scores};
use crate::util::{bytes, median, ratio, run, secs, Res, Table};
use crate::Bench;

/// The sweep's options: `--rd-q` and `--rd-variant`.
#[derive(Default)]
pub struct RdOpts {
    /// imgfs's quality steps for every format (default: per format, see [`imgfs_steps`]).
    pub q: Option<Vec<u8>>,
    pub variants: Vec<Variant>,
}

/// A tuning of imgfs swept beside its defaults: extra arguments to `imgfs convert`.
pub struct Variant {
    pub name: String,
    /// The formats it is swept for (all lossy ones when not given).
    pub formats: Option<Vec<String>>,
    pub args: Vec<String>,
}

impl Variant {
    /// `NAME=ARGS` or `NAME:FMT,FMT=ARGS`, e.g. `fast:heic=--heic-preset fast`.
    pub fn parse(s: &str) -> Res<Variant> {
        let bad = || format!("--rd-variant {s:?}: NAME[:FORMAT,...]=ARGS");
        let (head, args) = s.split_once('=').ok_or_else(bad)?;
        let (name, formats) = match head.split_once(':') {
            Some((n, f)) => (n, Some(f.split(',').map(str::to_string).collect())),
            None => (head, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(bad());
        }
        let args = args.split_whitespace().map(str::to_string).collect();
        Ok(Variant { name: name.into(), formats, args })
    }

    fn covers(&self, fmt: &str) -> bool {
        self.formats.as_ref().is_none_or(|f| f.iter().any(|x| x == fmt))
    }
}

/// imgfs's quality steps per format, around where each reference's score lands. Few, as
/// scoring a 20 MP output takes 10–20 s (SSIMULACRA2 most of it) on 2 cores.
fn imgfs_steps(b: &Bench, fmt: &str) -> Vec<u8> {
    if let Some(q) = &b.rd.q {
        let mut q = q.clone();
        q.sort_unstable();
        q.dedup();
        return q;
    }
    if b.smoke {
        return vec![40, 70, 95];
    }
    match fmt {
        // Steps of 5 where the references land: at steps of 10 even geometric interpolation
        // read full-size HEIC 1–2% high (docs/benchmarks.md, "Rate–distortion").
        "heic" => vec![40, 45, 50, 55, 60, 65, 70, 80],
        "webp" => vec![75, 85, 88, 92],
        "avif" => vec![40, 50, 60, 70, 80],
        _ => vec![60, 85, 95],
    }
}

#[derive(Clone)]
enum Tool {
    /// `imgfs convert SRC [resize,l_900@]format,FMT@quality,Q_N ARGS`
    Imgfs { fmt: &'static str, resize: bool, args: Vec<String> },
    /// `heif-enc -q N` (its default preset, slow).
    HeifEnc,
    /// `cwebp -q N -m 6 -mt -metadata exif`
    Cwebp,
    /// `avifenc -j all [--min N --max N]` at its default speed (6); no N: its default
    /// quantizers (24–26 in Debian's 0.11).
    Avifenc,
    /// `vipsthumbnail SRC --size 900x900 -o OUT.FMT[Q=N(,effort=6)]`
    Vips { fmt: &'static str },
}

/// One encoder at one setting, swept over quality steps: one line of the plot.
struct Series {
    id: String,
    label: String,
    enc: Tool,
    ext: &'static str,
    /// 900 px resizes (plotted apart from the full-size outputs).
    resize: bool,
    /// Quality steps, ascending; `None` = the tool's default quality.
    steps: Vec<Option<u8>>,
    /// Which step is the reference point, for the reference tools.
    default: Option<usize>,
}

impl Series {
    fn command(&self, b: &Bench, p: &Photo, q: Option<u8>, out: &Path) -> Command {
        let q_s = q.map(|q| q.to_string()).unwrap_or_default();
        match &self.enc {
            Tool::Imgfs { fmt, resize, args } => {
                let mut spec = if *resize { "resize,l_900@".to_string() } else { String::new() };
                spec += &format!("format,{fmt}");
                if let Some(q) = q {
                    spec += &format!("@quality,Q_{q}");
                }
                let mut c = Command::new(&b.imgfs);
                c.arg("convert").arg(&p.path).arg(spec).arg("-o").arg(out);
                if !resize {
                    c.args(BIG);
                }
                c.args(args);
                c
            }
            Tool::HeifEnc => {
                let mut c = Command::new("heif-enc");
                c.args(["-q", &q_s]).arg(&p.path).arg("-o").arg(out);
                c
            }
            Tool::Cwebp => {
                let mut c = Command::new("cwebp");
                c.args(["-q", &q_s, "-m", "6", "-mt", "-metadata", "exif", "-quiet"]);
                c.arg(&p.path).arg("-o").arg(out);
                c
            }
            Tool::Avifenc => {
                let mut c = Command::new("avifenc");
                c.args(["-j", "all"]);
                if q.is_some() {
                    c.args(["--min", &q_s, "--max", &q_s]);
                }
                c.arg(&p.path).arg("-o").arg(out);
                c
            }
            Tool::Vips { fmt } => {
                let effort = if *fmt == "webp" { ",effort=6" } else { "" };
                let mut c = Command::new("vipsthumbnail");
                c.arg(&p.path).args(["--size", "900x900", "-o"]);
                c.arg(format!("{}[Q={q_s}{effort}]", out.display()));
                c
            }
        }
    }

    fn step_label(&self, q: Option<u8>) -> String {
        match (&self.enc, q) {
            (Tool::Avifenc, Some(q)) => format!("quantizer {q}"),
            (Tool::Avifenc, None) => "default (quantizers 24–26)".into(),
            (_, Some(q)) => format!("Q{q}"),
            (_, None) => "default".into(),
        }
    }
}

/// One output of a sweep.
#[derive(Clone)]
struct Point {
    q: Option<u8>,
    bytes: u64,
    /// Wall time of each run.
    times: Vec<f64>,
    s: Scores,
}

impl Point {
    fn time(&self) -> f64 {
        median(&self.times)
    }

    fn bpp(&self) -> f64 {
        self.bytes as f64 * 8.0 / (f64::from(self.s.size.0) * f64::from(self.s.size.1))
    }
}

/// A comparison: a reference tool's default point against imgfs's sweeps (one per variant).
struct Target {
    title: String,
    reference: usize,
    imgfs: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Metric {
    Ssim2,
    Dssim,
}

impl Metric {
    fn of(self, s: &Scores) -> f64 {
        match self {
            Metric::Ssim2 => s.ssim2,
            Metric::Dssim => s.dssim,
        }
    }

    /// Whether `a` is at least as good as `b`.
    fn at_least(self, a: f64, b: f64) -> bool {
        match self {
            Metric::Ssim2 => a >= b,
            Metric::Dssim => a <= b,
        }
    }
}

/// imgfs at the reference's score.
enum Equal {
    /// Interpolated between steps `lo` and `hi` (indices into the sweep).
    At { bytes: f64, time: f64, lo: usize, hi: usize },
    /// Even the lowest step scores at least the reference's: at most its bytes.
    Below,
    /// Not even the highest step reaches it.
    Above,
}

/// The first step (lowest quality up) that scores at least `target`, and interpolation in the
/// score between it and the step before: of the logarithm of the bytes (bytes grow about
/// geometrically with the quality, as BD-rate assumes; linear interpolation between steps 10
/// apart overstated them by up to 5%, docs/benchmarks.md) and of the time, linearly.
fn equal(points: &[Point], metric: Metric, target: f64) -> Equal {
    let Some(i) = points.iter().position(|p| metric.at_least(metric.of(&p.s), target)) else {
        return Equal::Above;
    };
    if i == 0 {
        return Equal::Below;
    }
    let (lo, hi) = (&points[i - 1], &points[i]);
    let (m_lo, m_hi) = (metric.of(&lo.s), metric.of(&hi.s));
    let t = if m_hi == m_lo { 1.0 } else { (target - m_lo) / (m_hi - m_lo) };
    let lerp = |a: f64, b: f64| a + t * (b - a);
    Equal::At {
        bytes: lerp((lo.bytes as f64).ln(), (hi.bytes as f64).ln()).exp(),
        time: lerp(lo.time(), hi.time()),
        lo: i - 1,
        hi: i,
    }
}

/// heif-enc's and vipsthumbnail's own default HEIC quality, the reference point of their series
/// (imgfs's default, 44 since the quality mapping, is the encoder's 50 on imgfs's x265 settings).
const HEIF_ENC_Q: u8 = 50;

fn series_list(b: &Bench) -> (Vec<Series>, Vec<Target>) {
    let d = Qualities::default();
    let smoke = b.smoke;
    let mut all: Vec<Series> = vec![];
    // A reference: its steps (ascending quality), and the default step's index.
    let mut reference = |id: &str, label: String, enc: Tool, ext, resize, steps: Vec<Option<u8>>, def| {
        let steps = if smoke { vec![steps[def]] } else { steps };
        let default = Some(if smoke { 0 } else { def });
        all.push(Series { id: id.into(), label, enc, ext, resize, steps, default });
        all.len() - 1
    };
    let heif_enc = reference(
        "heif-enc",
        "heif-enc (preset slow)".into(),
        Tool::HeifEnc,
        "heic",
        false,
        vec![Some(30), Some(HEIF_ENC_Q)],
        1,
    );
    let cwebp = reference(
        "cwebp",
        "cwebp -m 6 -mt".into(),
        Tool::Cwebp,
        "webp",
        false,
        vec![Some(75), Some(d.webp)],
        1,
    );
    // avifenc's quantizers: lower is better, so the steps run from 45 down.
    let avifenc = reference(
        "avifenc",
        "avifenc (speed 6)".into(),
        Tool::Avifenc,
        "avif",
        false,
        vec![Some(35), None, Some(18)],
        1,
    );
    let vips_heic = reference(
        "vips-heic",
        "vipsthumbnail HEIC".into(),
        Tool::Vips { fmt: "heic" },
        "heic",
        true,
        vec![Some(30), Some(HEIF_ENC_Q), Some(70)],
        1,
    );
    let vips_webp = reference(
        "vips-webp",
        "vipsthumbnail WebP effort 6".into(),
        Tool::Vips { fmt: "webp" },
        "webp",
        true,
        vec![Some(75), Some(d.webp), Some(95)],
        1,
    );
    let mut imgfs_of = |fmt: &'static str, resize: bool| -> Vec<usize> {
        let mut ids = vec![];
        let variants = std::iter::once(("default", vec![]))
            .chain(b.rd.variants.iter().filter(|v| v.covers(fmt)).map(|v| (v.name.as_str(), v.args.clone())));
        for (name, args) in variants {
            let size = if resize { "900 " } else { "" };
            let label = if name == "default" {
                format!("imgfs {size}{}", fmt.to_uppercase())
            } else {
                format!("imgfs {size}{} ({name})", fmt.to_uppercase())
            };
            all.push(Series {
                id: format!("imgfs-{}{fmt}-{name}", if resize { "900-" } else { "" }),
                label,
                enc: Tool::Imgfs { fmt, resize, args },
                ext: fmt,
                resize,
                steps: imgfs_steps(b, fmt).into_iter().map(Some).collect(),
                default: None,
            });
            ids.push(all.len() - 1);
        }
        ids
    };
    let (heic, webp, avif) = (imgfs_of("heic", false), imgfs_of("webp", false), imgfs_of("avif", false));
    let (heic_900, webp_900) = (imgfs_of("heic", true), imgfs_of("webp", true));
    imgfs_of("jpg", false);
    let targets = vec![
        Target {
            title: format!("Full-size HEIC: imgfs vs `heif-enc -q {HEIF_ENC_Q}` (preset slow)"),
            reference: heif_enc,
            imgfs: heic,
        },
        Target {
            title: format!("Full-size WebP: imgfs vs `cwebp -q {} -m 6 -mt -metadata exif`", d.webp),
            reference: cwebp,
            imgfs: webp,
        },
        Target {
            title: "Full-size AVIF: imgfs vs `avifenc -j all` (defaults: speed 6, quantizers 24–26)".into(),
            reference: avifenc,
            imgfs: avif,
        },
        Target {
            title: format!(
                "Resize to 900 px + HEIC: imgfs vs `vipsthumbnail --size 900x900 -o out.heic[Q={HEIF_ENC_Q}]`"
            ),
            reference: vips_heic,
            imgfs: heic_900,
        },
        Target {
            title: format!(
                "Resize to 900 px + WebP: imgfs vs `vipsthumbnail --size 900x900 -o out.webp[Q={},effort=6]`",
                d.webp
            ),
            reference: vips_webp,
            imgfs: webp_900,
        },
    ];
    (all, targets)
}

/// The `rd` case: sweeps, equal-quality tables, plots.
pub fn rd(b: &Bench) -> Res<Vec<Table>> {
    let (series, targets) = series_list(b);
    // results[photo][series][step]
    let mut results: Vec<Vec<Vec<Point>>> = vec![];
    for p in &b.photos {
        let stem = p.name.trim_end_matches(".jpg");
        let mut per_series = vec![];
        // Outputs already scored, by content (cwebp writes what imgfs's WebP writes).
        let mut seen: HashMap<Vec<u8>, Scores> = HashMap::new();
        for s in &series {
            let mut points = vec![];
            for &q in &s.steps {
                let out = b.work.join(format!("out/rd-{stem}-{}-{}.{}", s.id, q.unwrap_or(0), s.ext));
                let wall = run(&mut s.command(b, p, q, &out))?;
                let data = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
                let scores = match seen.get(&data) {
                    Some(&known) => known,
                    None => *seen.entry(data.clone()).or_insert(score::scores(p, &data)?),
                };
                let _ = std::fs::remove_file(&out);
                if scores.ssim2.is_nan() || scores.dssim.is_nan() {
                    return Err(format!("{}: {} {}: no score", p.name, s.label, s.step_label(q)));
                }
                points.push(Point { q, bytes: data.len() as u64, times: vec![wall], s: scores });
            }
            eprintln!("  rd {} {}: {} steps", p.name, s.id, points.len());
            per_series.push(points);
        }
        // More runs, for median times, of the points the tables compare: each reference's
        // default and the imgfs steps around its SSIMULACRA2 (round-robin).
        let mut timed = BTreeSet::new();
        for t in &targets {
            let r = t.reference;
            let target = per_series[r][series[r].default.unwrap()].s.ssim2;
            timed.insert((r, series[r].default.unwrap()));
            for &i in &t.imgfs {
                if let Equal::At { lo, hi, .. } = equal(&per_series[i], Metric::Ssim2, target) {
                    timed.extend([(i, lo), (i, hi)]);
                }
            }
        }
        for _ in 1..b.reps {
            for &(si, k) in &timed {
                let s = &series[si];
                let q = s.steps[k];
                let out = b.work.join(format!("out/rd-{stem}-{}-time.{}", s.id, s.ext));
                per_series[si][k].times.push(run(&mut s.command(b, p, q, &out))?);
                let _ = std::fs::remove_file(&out);
            }
        }
        p.forget();
        results.push(per_series);
    }
    let mut tables: Vec<Table> = targets.iter().map(|t| target_table(b, &series, t, &results)).collect();
    tables.push(sweep_table(b, &series, &results));
    plots(b, &series, &results)?;
    Ok(tables)
}

fn target_table(b: &Bench, series: &[Series], t: &Target, results: &[Vec<Vec<Point>>]) -> Table {
    let mut table = Table::new(
        t.title.clone(),
        vec![
            "photo",
            "imgfs",
            "ref bytes",
            "ref SSIM2",
            "ref DSSIM",
            "imgfs bytes at ref's SSIM2",
            "bytes imgfs/ref (SSIM2)",
            "imgfs bytes at ref's DSSIM",
            "bytes imgfs/ref (DSSIM)",
            "ref time",
            "imgfs time at ref's SSIM2",
            "time imgfs/ref",
        ],
    );
    let r = &series[t.reference];
    // Per imgfs series: the logs of the ratios, for geometric means.
    let mut logs: Vec<[Vec<f64>; 3]> = t.imgfs.iter().map(|_| Default::default()).collect();
    for (p, per_series) in b.photos.iter().zip(results) {
        let rp = &per_series[t.reference][r.default.unwrap()];
        for (n, &i) in t.imgfs.iter().enumerate() {
            let s = &series[i];
            let pts = &per_series[i];
            let mut row = vec![
                p.name.clone(),
                s.label.clone(),
                bytes(rp.bytes),
                format!("{:.2}", rp.s.ssim2),
                format!("{:.5}", rp.s.dssim),
            ];
            let mut time_cells = vec![secs(rp.time()), "–".into(), "–".into()];
            for (m, metric) in [Metric::Ssim2, Metric::Dssim].into_iter().enumerate() {
                let e = equal(pts, metric, metric.of(&rp.s));
                let (cell, rat) = match e {
                    Equal::At { bytes: eb, time, lo, hi } => {
                        logs[n][m].push((eb / rp.bytes as f64).ln());
                        if metric == Metric::Ssim2 {
                            logs[n][2].push((time / rp.time()).ln());
                            time_cells[1] = secs(time);
                            time_cells[2] = ratio(time, rp.time());
                        }
                        let (ql, qh) = (s.step_label(pts[lo].q), s.step_label(pts[hi].q));
                        (format!("{eb:.0} ({ql}–{qh})"), ratio(eb, rp.bytes as f64))
                    }
                    Equal::Below => (
                        format!("< {} (already at {})", pts[0].bytes, s.step_label(pts[0].q)),
                        format!("< {}", ratio(pts[0].bytes as f64, rp.bytes as f64)),
                    ),
                    Equal::Above => {
                        (format!("not reached by {}", s.step_label(pts.last().unwrap().q)), "–".into())
                    }
                };
                row.extend([cell, rat]);
            }
            row.extend(time_cells);
            table.rows.push(row);
        }
    }
    if b.photos.len() > 1 {
        for (n, &i) in t.imgfs.iter().enumerate() {
            let gm = |v: &[f64]| {
                if v.is_empty() {
                    "–".to_string()
                } else {
                    format!(
                        "**{:.2}×** ({} of {})",
                        (v.iter().sum::<f64>() / v.len() as f64).exp(),
                        v.len(),
                        b.photos.len()
                    )
                }
            };
            let e = String::new;
            let row = vec!["geometric mean".into(), series[i].label.clone(), e(), e(), e(), e()];
            let row = [row, vec![gm(&logs[n][0]), e(), gm(&logs[n][1]), e(), e(), gm(&logs[n][2])]].concat();
            table.rows.push(row);
        }
    }
    table.note = format!(
        "Reference: {} at its default point ({}). imgfs's quality steps are searched for the first one scoring at least the reference's (SSIMULACRA2 ≥, DSSIM ≤), and bytes (geometrically: the logarithm of the bytes, linearly) and wall time (linearly) are interpolated in the score between it and the step before (the steps are in the cell); \"<\" = imgfs's lowest step already scores better, so at most those bytes. Wall times are whole processes (exec, decode, encode, write), medians of {} runs for the compared points, one run for the other steps.",
        r.label,
        r.step_label(r.steps[r.default.unwrap()]),
        b.reps
    );
    table
}

/// Every point of every sweep: the raw data of the tables and the plot.
fn sweep_table(b: &Bench, series: &[Series], results: &[Vec<Vec<Point>>]) -> Table {
    let mut t = Table::new(
        "Rate–distortion sweeps (every point)",
        vec!["photo", "encoder", "step", "bytes", "bits/pixel", "SSIM2", "DSSIM", "time", "output size"],
    );
    for (p, per_series) in b.photos.iter().zip(results) {
        for (s, pts) in series.iter().zip(per_series) {
            for pt in pts {
                t.rows.push(vec![
                    p.name.clone(),
                    s.label.clone(),
                    s.step_label(pt.q),
                    bytes(pt.bytes),
                    format!("{:.3}", pt.bpp()),
                    format!("{:.2}", pt.s.ssim2),
                    format!("{:.5}", pt.s.dssim),
                    secs(pt.time()),
                    format!("{}×{}", pt.s.size.0, pt.s.size.1),
                ]);
            }
        }
    }
    t.note = "SSIM2 = SSIMULACRA2 (higher is better), DSSIM (lower is better), both against the decoded source resized to the output's size. Times: one run (medians where the target tables compare).".into();
    t
}

/// rd.svg (full size: mean bits/pixel and SSIMULACRA2 over the photos at each step),
/// rd-dssim.svg (the same with DSSIM), rd-resize.svg (900 px outputs) and one plot per
/// photo, in the output directory; a full run also copies rd.svg to docs/rd.svg.
fn plots(b: &Bench, series: &[Series], results: &[Vec<Vec<Point>>]) -> Res<()> {
    let out = b.work.parent().ok_or("no output directory")?;
    let lines = |resize: bool, metric: Metric, photos: &[usize]| -> Vec<Line> {
        let mut lines = vec![];
        // Colours: one per format, shared by imgfs's default line and the reference; imgfs's
        // variants take the palette's later colours.
        let mut spare = 4;
        for (i, s) in series.iter().enumerate().filter(|(_, s)| s.resize == resize) {
            let colour = match s.enc {
                Tool::Imgfs { .. } if !s.id.ends_with("-default") => {
                    spare += 1;
                    spare - 1
                }
                _ => ["heic", "webp", "avif", "jpg"].iter().position(|&f| f == s.ext).unwrap_or(3),
            };
            let mean = |k: usize, f: &dyn Fn(&Point) -> f64| {
                photos.iter().map(|&n| f(&results[n][i][k])).sum::<f64>() / photos.len() as f64
            };
            let mut points: Vec<(f64, f64)> =
                (0..s.steps.len()).map(|k| (mean(k, &|p| p.bpp()), mean(k, &|p| metric.of(&p.s)))).collect();
            let default = s.default.map(|k| points[k]);
            points.sort_by(|a, c| a.0.total_cmp(&c.0));
            lines.push(Line {
                label: s.label.clone(),
                points,
                imgfs: s.id.starts_with("imgfs"),
                default,
                colour,
            });
        }
        lines
    };
    let all: Vec<usize> = (0..b.photos.len()).collect();
    let n = b.photos.len();
    let over = if n == 1 { b.photos[0].name.clone() } else { format!("mean of {n} photos") };
    let y2 = "SSIMULACRA2 (higher is better)";
    let yd = "DSSIM (lower is better)";
    let x = "bits per pixel";
    let svg = out.join("rd.svg");
    plot::write_svg(
        &svg,
        &format!("Full size: rate–distortion ({over})"),
        x,
        y2,
        &lines(false, Metric::Ssim2, &all),
    )?;
    plot::write_svg(
        &out.join("rd-dssim.svg"),
        &format!("Full size: rate–distortion, DSSIM ({over})"),
        x,
        yd,
        &lines(false, Metric::Dssim, &all),
    )?;
    plot::write_svg(
        &out.join("rd-resize.svg"),
        &format!("Resize to 900 px: rate–distortion ({over})"),
        x,
        y2,
        &lines(true, Metric::Ssim2, &all),
    )?;
    if n > 1 {
        for (k, p) in b.photos.iter().enumerate() {
            let stem = p.name.trim_end_matches(".jpg");
            let title = format!("Full size: rate–distortion, {} ({:.1} MP)", p.name, p.megapixels());
            plot::write_svg(
                &out.join(format!("rd-{stem}.svg")),
                &title,
                x,
                y2,
                &lines(false, Metric::Ssim2, &[k]),
            )?;
        }
    }
    if !b.smoke {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rd.svg");
        std::fs::copy(&svg, &docs).map_err(|e| format!("{}: {e}", docs.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(bytes: u64, ssim2: f64) -> Point {
        Point { q: None, bytes, times: vec![1.0], s: Scores { ssim2, dssim: 0.0, size: (1, 1) } }
    }

    #[test]
    fn bytes_at_equal_score_are_interpolated_geometrically() {
        let points = [point(1000, 80.0), point(4000, 90.0)];
        // Halfway in the score is the geometric mean of the bytes, not their mean (2500).
        let Equal::At { bytes, lo, hi, .. } = equal(&points, Metric::Ssim2, 85.0) else {
            panic!("not bracketed");
        };
        assert!((bytes - 2000.0).abs() < 1e-6, "{bytes}");
        assert_eq!((lo, hi), (0, 1));
        assert!(matches!(equal(&points, Metric::Ssim2, 70.0), Equal::Below));
        assert!(matches!(equal(&points, Metric::Ssim2, 95.0), Equal::Above));
    }
}
