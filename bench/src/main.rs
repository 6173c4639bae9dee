//! imgfs benchmark (issue 4): imgfs against vipsthumbnail, heif-enc and cwebp on real photos,
//! and the mount's first-read, throughput, listing and memory behaviour.
//!
//! imgfs-bench score SOURCE OUTPUT...   (SSIMULACRA2 and DSSIM of outputs, as the tables score them)
//! imgfs-bench [--smoke] [--photos DIR] [--reps N] [--out DIR (bench-out, smoke: bench-out/smoke)] [--imgfs BIN]
//!             [--only resize,full,first,throughput,ls,rss,defaults,presets,disk,warm,rd] [--webp-q N] [--heic-q N]
//!             [--rd-q 30,50,70] [--rd-variant NAME[:heic,webp]='--heic-preset fast']... (rd.rs)

mod disk;
mod encode;
mod mount;
mod plot;
mod rd;
mod score;
mod target;
mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use score::Photo;
use util::{first_line, run, Res, Table};

pub struct Bench {
    pub imgfs: PathBuf,
    pub work: PathBuf,
    /// The photos, copied here: the mount's source directory.
    pub photo_dir: PathBuf,
    pub photos: Vec<Photo>,
    /// A ~12 MP photo for the x265 preset curve.
    pub preset_photo: Option<Photo>,
    pub reps: usize,
    pub smoke: bool,
    pub webp_q: u8,
    pub heic_q: u8,
    pub jobs: usize,
    pub rd: rd::RdOpts,
    pub notes: Vec<String>,
}

type Case = fn(&Bench) -> Res<Vec<Table>>;
const CASES: [(&str, Case); 12] = [
    ("resize", encode::resize),
    ("full", encode::full),
    ("first", mount::first_read),
    ("throughput", mount::throughput),
    ("ls", mount::ls),
    ("rss", mount::rss),
    ("defaults", encode::defaults),
    ("presets", encode::presets),
    ("disk", disk::disk_hit),
    ("warm", disk::warm),
    ("target", target::target),
    ("rd", rd::rd),
];

fn main() {
    if let Err(e) = real_main() {
        eprintln!("imgfs-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("score") {
        // imgfs-bench score SOURCE OUTPUT...: SSIMULACRA2 and DSSIM of each output, as the tables score.
        let source = Photo::open(PathBuf::from(argv.get(2).ok_or("score SOURCE OUTPUT...")?))?;
        for out in &argv[3..] {
            let bytes = fs::read(out).map_err(|e| format!("{out}: {e}"))?;
            let s = score::scores(&source, &bytes)?;
            let (w, h) = s.size;
            println!("{:.2}\t{:.5}\t{w}x{h}\t{}\t{out}", s.ssim2, s.dssim, bytes.len());
        }
        return Ok(());
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (mut photos, mut out, mut imgfs) =
        (PathBuf::from("/usr/share/backgrounds"), None, repo.join("target/release/imgfs"));
    let (mut reps, mut smoke, mut only, mut webp_q, mut heic_q) = (None, false, None, 86, 50);
    let mut rd = rd::RdOpts::default();
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--smoke" => smoke = true,
            "--photos" => photos = val()?.into(),
            "--out" => out = Some(PathBuf::from(val()?)),
            "--imgfs" => imgfs = val()?.into(),
            "--reps" => reps = Some(val()?.parse().map_err(|_| "--reps: a number")?),
            "--only" => only = Some(val()?),
            "--webp-q" => webp_q = val()?.parse().map_err(|_| "--webp-q: 1..100")?,
            "--heic-q" => heic_q = val()?.parse().map_err(|_| "--heic-q: 1..100")?,
            "--rd-q" => {
                let q: Result<Vec<u8>, _> = val()?.split(',').map(str::parse).collect();
                rd.q = Some(
                    q.ok()
                        .filter(|q| q.iter().all(|&q| (1..=100).contains(&q)))
                        .ok_or("--rd-q: 30,50,70 (1..100)")?,
                );
            }
            "--rd-variant" => rd.variants.push(rd::Variant::parse(&val()?)?),
            _ => return Err(format!("unknown argument {a}; see the top of bench/src/main.rs")),
        }
    }
    // The smoke run must not overwrite a full run's results.
    let out = out.unwrap_or_else(|| PathBuf::from(if smoke { "bench-out/smoke" } else { "bench-out" }));
    let imgfs = imgfs.canonicalize().map_err(|e| format!("{}: {e} (build it first)", imgfs.display()))?;
    let work = out.join("work");
    fs::create_dir_all(work.join("out")).map_err(|e| e.to_string())?;
    let work = work.canonicalize().map_err(|e| e.to_string())?;
    // A private copy: others may rebuild target/release/imgfs while the bench runs.
    let snapshot = work.join("imgfs");
    fs::copy(&imgfs, &snapshot).map_err(|e| format!("copying {}: {e}", imgfs.display()))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut b = Bench {
        imgfs: snapshot,
        photo_dir: work.join("photos"),
        work,
        photos: vec![],
        preset_photo: None,
        reps: reps.unwrap_or(if smoke { 1 } else { 3 }),
        smoke,
        webp_q,
        heic_q,
        jobs,
        rd,
        notes: vec![],
    };
    b.notes.push(format!("imgfs binary: {} (run from a copy in the work dir).", imgfs.display()));
    prepare_photos(&mut b, &photos)?;
    let mut report = header(&b, &argv);
    let results = out.join("results.md");
    let mut failures = vec![];
    let mut presets_md = None;
    for (name, case) in CASES {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|x| x == name)) {
            continue;
        }
        eprintln!("== {name}");
        match case(&b) {
            Ok(tables) => {
                for t in tables {
                    let md = t.markdown();
                    println!("{md}");
                    if name == "presets" {
                        presets_md = Some(md.clone());
                    }
                    report += &md;
                }
            }
            Err(e) => {
                eprintln!("FAILED {name}: {e}");
                failures.push(format!("- **{name} failed**: {e}"));
            }
        }
        fs::write(&results, format!("{report}{}", failed(&failures))).map_err(|e| e.to_string())?;
    }
    if let Some(md) = presets_md {
        fs::write(out.join("x265-presets.md"), format!("{}{md}", header(&b, &argv)))
            .map_err(|e| e.to_string())?;
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let end = format!("{report}{}Load average at the end: {load}\n", failed(&failures));
    fs::write(&results, end).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(b.work.join("out"));
    eprintln!("wrote {}", results.display());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} case(s) failed:\n{}", failures.len(), failures.join("\n")))
    }
}

fn failed(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!("## Failures\n\n{}\n\n", failures.join("\n"))
    }
}

/// Picks the photos (3–20 MP, one ≥ 16 MP; smoke: one small copy) into work/photos.
fn prepare_photos(b: &mut Bench, dir: &Path) -> Res<()> {
    let _ = fs::remove_dir_all(&b.photo_dir);
    fs::create_dir_all(&b.photo_dir).map_err(|e| e.to_string())?;
    let mut all: Vec<Photo> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg"))
        })
        .filter_map(|p| Photo::open(p).ok())
        .collect();
    all.sort_by(|a, c| a.megapixels().total_cmp(&c.megapixels()));
    if all.is_empty() {
        return Err(format!("no JPEG photos in {}", dir.display()));
    }
    let thumb = |src: &Path, side: u32, dest: &Path| -> Res<Photo> {
        let size = format!("{side}x{side}");
        run(Command::new("vipsthumbnail")
            .arg(src)
            .args(["--size", &size, "-o"])
            .arg(format!("{}[Q=92]", dest.display())))?;
        Photo::open(dest.to_path_buf())
    };
    if b.smoke {
        let src = all.iter().rev().find(|p| p.megapixels() <= 20.5).unwrap_or(&all[0]);
        let small = thumb(&src.path, 1600, &b.photo_dir.join("small.jpg"))?;
        b.notes.push(format!(
            "Smoke mode: one photo, {} downscaled to {}×{}.",
            src.name, small.width, small.height
        ));
        b.preset_photo = Some(Photo::open(small.path.clone())?);
        b.photos = vec![small];
        return Ok(());
    }
    let in_range: Vec<&Photo> = all.iter().filter(|p| (3.0..=20.5).contains(&p.megapixels())).collect();
    let cands = if in_range.is_empty() { all.iter().collect() } else { in_range };
    let picked: Vec<&Photo> = if cands.len() <= 3 {
        cands.clone()
    } else {
        vec![cands[0], cands[cands.len() / 2], cands[cands.len() - 1]]
    };
    for p in &picked {
        let dest = b.photo_dir.join(&p.name);
        fs::copy(&p.path, &dest).map_err(|e| e.to_string())?;
        b.photos.push(Photo::open(dest)?);
    }
    if !b.photos.iter().any(|p| p.megapixels() >= 16.0) {
        let src = picked.last().unwrap();
        let side = (f64::from(src.width.max(src.height)) * (16.5 / src.megapixels()).sqrt()).ceil() as u32;
        let up = thumb(&src.path, side, &b.photo_dir.join(format!("upscaled-{}", src.name)))?;
        b.notes.push(format!(
            "No photo ≥ 16 MP: {} was upscaled with vipsthumbnail to {}×{}.",
            src.name, up.width, up.height
        ));
        b.photos.push(up);
    }
    let skipped: Vec<String> = all
        .iter()
        .filter(|p| !picked.iter().any(|q| q.name == p.name))
        .map(|p| format!("{} ({:.1} MP)", p.name, p.megapixels()))
        .collect();
    if !skipped.is_empty() {
        b.notes.push(format!("Not used (outside 3–20.5 MP or not picked): {}.", skipped.join(", ")));
    }
    // The preset curve: a 4000×3000 centre crop (real pixels, no resampling) of the largest photo.
    let big = picked.last().unwrap();
    let dest = b.work.join("preset-12mp.jpg");
    if big.width >= 4000 && big.height >= 3000 {
        let (x, y) = ((big.width - 4000) / 2, (big.height - 3000) / 2);
        run(Command::new("vips")
            .arg("crop")
            .arg(&big.path)
            .arg(format!("{}[Q=95]", dest.display()))
            .args([x.to_string(), y.to_string(), "4000".into(), "3000".into()]))?;
        b.notes.push(format!("x265 preset photo: 4000×3000 centre crop of {}, saved as JPEG Q95.", big.name));
        b.preset_photo = Some(Photo::open(dest)?);
    } else {
        b.notes.push(format!("x265 preset photo: {} as is (smaller than 12 MP).", big.name));
        b.preset_photo = Some(Photo::open(big.path.clone())?);
    }
    Ok(())
}

fn header(b: &Bench, argv: &[String]) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |m| m.trim_start_matches([' ', '\t', ':']));
    let mem =
        fs::read_to_string("/proc/meminfo").unwrap_or_default().lines().next().unwrap_or("").to_string();
    let mut s = format!(
        "# imgfs benchmark\n\n- command: `{}`\n- date: {}\n- machine: nproc {}, CPU {cpu}, {}, kernel {}\n- load average at the start: {}\n- tools: {}; heif-enc {}; {}; imgfs-bench built against src/ as of its build\n- repetitions: {} (medians; imgfs and the reference alternate)\n",
        argv.join(" "),
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        b.jobs,
        mem.split_whitespace().collect::<Vec<_>>().join(" "),
        first_line("uname", &["-r"]),
        fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        first_line("vipsthumbnail", &["--version"]),
        first_line("sh", &["-c", "dpkg-query -W -f='${Version}' libheif-examples"]),
        first_line("sh", &["-c", "echo cwebp $(cwebp -version)"]),
        b.reps,
    );
    s += "- photos:\n";
    for p in &b.photos {
        let len = fs::metadata(&p.path).map(|m| m.len()).unwrap_or(0);
        s += &format!("  - {}: {}×{} ({:.1} MP), {len} bytes\n", p.name, p.width, p.height, p.megapixels());
    }
    for n in &b.notes {
        s += &format!("- {n}\n");
    }
    s + "- SSIM2 = SSIMULACRA2 of the decoded output against the decoded source (image crate) resized to the output's size (Lanczos3); HEIF/AVIF outputs decoded by libheif through imgfs's codec.\n\n"
}
