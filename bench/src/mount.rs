//! Cases through a real mount: first read (conversion), read throughput of cached variants
//! and originals, `ls -l` of a big directory, and peak RSS under a stream of variants.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::encode::BIG;
use crate::util::{bytes, median, mib, peak_rss, ratio, run, secs, time, Res, Table};
use crate::Bench;

/// A running `imgfs mount` of the bench's photo directory; SIGTERM and a check on drop.
pub struct Mount {
    child: Child,
    pub dir: PathBuf,
    log: PathBuf,
}

fn mounted(dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().any(|l| l.split(' ').nth(4) == Some(&*dir)))
        .unwrap_or(false)
}

impl Mount {
    pub fn start(b: &Bench, args: &[&str], tag: &str) -> Res<Mount> {
        let dir = b.work.join(format!("mnt-{tag}"));
        let log = b.work.join(format!("mount-{tag}.log"));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let stderr = File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(&b.imgfs)
            .arg("mount")
            .arg(&b.photo_dir)
            .arg(&dir)
            .args(args)
            // Cases measure conversions unless they ask for a disk cache of their own.
            .args(["--no-disk-cache"].iter().filter(|_| !args.iter().any(|a| a.starts_with("--disk-cache"))))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("{}: {e}", b.imgfs.display()))?;
        let mut m = Mount { child, dir, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !mounted(&m.dir) {
            if let Ok(Some(status)) = m.child.try_wait() {
                return Err(format!("imgfs mount exited ({status}): {}", m.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("imgfs mount: not in mountinfo after 20 s: {}", m.log_text()));
            }
            sleep(Duration::from_millis(10));
        }
        Ok(m)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                eprintln!("warning: imgfs mount ignored SIGTERM for 10 s; killing it");
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            sleep(Duration::from_millis(20));
        }
        if mounted(&self.dir) {
            eprintln!("warning: {} still mounted after imgfs exited", self.dir.display());
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.dir).status();
        }
    }
}

/// First read of a variant through a fresh mount vs `imgfs convert` of the same spec.
pub fn first_read(b: &Bench) -> Res<Vec<Table>> {
    let spec = "resize,l_900@format,webp";
    let n = b.photos.len();
    let (mut via, mut conv, mut same, mut len) =
        (vec![vec![]; n], vec![vec![]; n], vec![true; n], vec![0; n]);
    for p in &b.photos {
        fs::read(&p.path).map_err(|e| e.to_string())?; // the source in the page cache for both
    }
    for rep in 0..b.reps {
        let m = Mount::start(b, &[], "first")?;
        for (i, p) in b.photos.iter().enumerate() {
            let variant = m.path(&format!("{}@{spec}", p.name));
            via[i].push(run(Command::new("cat").arg(&variant))?);
            let out = b.work.join(format!("out/convert-{}.webp", p.name));
            conv[i].push(run(Command::new(&b.imgfs)
                .arg("convert")
                .arg(&p.path)
                .arg(spec)
                .arg("-o")
                .arg(&out))?);
            if rep == 0 {
                let (a, c) = (
                    fs::read(&variant).map_err(|e| e.to_string())?,
                    fs::read(&out).map_err(|e| e.to_string())?,
                );
                same[i] = a == c;
                len[i] = a.len() as u64;
            }
        }
    }
    let mut t = Table::new(
        format!("First read through the mount (`cat MNT/photo.jpg@{spec}`) vs `imgfs convert`"),
        vec!["photo", "first read via mount", "imgfs convert", "mount/convert", "bytes", "identical bytes"],
    );
    for (i, p) in b.photos.iter().enumerate() {
        let (a, c) = (median(&via[i]), median(&conv[i]));
        t.rows.push(vec![p.name.clone(), secs(a), secs(c), ratio(a, c), bytes(len[i]), same[i].to_string()]);
    }
    t.note = format!("A fresh mount per repetition (empty cache); the JPEG sources are in the page cache for both. Medians of {}, alternated.", b.reps);
    Ok(vec![t])
}

/// Reads a whole file with 1 MiB reads (as `dd bs=1M`); `drop` first asks the kernel to
/// drop its cached pages (POSIX_FADV_DONTNEED on this file and on `also`). Returns MB/s.
fn read_all(path: &Path, drop: bool, also: Option<&Path>) -> Res<f64> {
    let advise = |p: &Path| -> Res<File> {
        let f = File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
        Ok(f)
    };
    if drop {
        if let Some(other) = also {
            advise(other)?;
        }
    }
    let mut f = if drop { advise(path)? } else { File::open(path).map_err(|e| e.to_string())? };
    let mut buf = vec![0u8; 1 << 20];
    let (secs_, total) = time(|| {
        let mut total = 0u64;
        loop {
            match f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    })?;
    Ok(total as f64 / 1e6 / secs_)
}

/// Writes every cache line of a buffer larger than the last-level cache.
fn flush_cpu_caches(scratch: &mut [u8]) {
    for line in scratch.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    std::hint::black_box(&scratch);
}

/// Reads `files` (mount, reference) once each with pages dropped, into `r[0]` and `r[2]`,
/// then `hot` times each with hot pages, into `r[1]` and `r[3]`. `also[i]` is dropped too.
fn read_pair(
    r: &mut [Vec<f64>],
    files: [&Path; 2],
    also: [Option<&Path>; 2],
    hot: usize,
    scratch: &mut [u8],
) -> Res<()> {
    for i in 0..2 {
        r[2 * i].push(read_all(files[i], true, also[i])?);
    }
    for file in files {
        read_all(file, false, None)?;
    }
    // Hot reads of 4 MB take half a millisecond, so which file went just before matters:
    // the original and its source share their pages, and whichever is read second would
    // find them in the CPU caches. So every timed read starts from flushed CPU caches, and
    // the two swap order each time.
    for n in 0..hot {
        for i in if n % 2 == 0 { [0, 1] } else { [1, 0] } {
            flush_cpu_caches(scratch);
            r[2 * i + 1].push(read_all(files[i], false, None)?);
        }
    }
    Ok(())
}

/// Cached-variant and original read throughput through the mount vs tmpfs / the source.
pub fn throughput(b: &Bench) -> Res<Vec<Table>> {
    let p = b.photos.iter().max_by_key(|p| p.width * p.height).unwrap();
    let reps = if b.smoke { 3 } else { 10 };
    let hot = 3;
    let mut r: Vec<Vec<f64>> = vec![vec![]; 8];
    let mut scratch = vec![0u8; 64 << 20];
    // The variant: a fresh mount and tmpfs copy per repetition. On a VM how fast a buffer
    // reads depends on which physical pages it got (up to ±20% here), so one allocation per
    // side would decide the ratio.
    let shm = PathBuf::from(format!("/dev/shm/imgfs-bench-{}.bmp", std::process::id()));
    let (mut conversions, mut len) = (vec![], 0);
    for _ in 0..reps {
        let m = Mount::start(b, &BIG, "tp")?;
        let variant = m.path(&format!("{}@format,bmp", p.name));
        let (t_conv, data) = time(|| fs::read(&variant).map_err(|e| format!("{}: {e}", variant.display())))?;
        conversions.push(t_conv);
        len = data.len();
        fs::write(&shm, &data).map_err(|e| e.to_string())?;
        read_pair(&mut r[0..4], [&variant, &shm], [None, None], hot, &mut scratch)?;
        fs::remove_file(&shm).map_err(|e| e.to_string())?;
    }
    // The original and the source file share their pages.
    let m = Mount::start(b, &BIG, "tp")?;
    let source = b.photo_dir.join(&p.name);
    let original = m.path(&p.name);
    for _ in 0..reps {
        read_pair(&mut r[4..8], [&original, &source], [Some(&source), None], hot, &mut scratch)?;
    }
    let passthrough = m.log_text().contains("passthrough for originals: true");
    let mbs = |i: usize| format!("{:.0}", median(&r[i]));
    let mut t = Table::new(
        "Read throughput, MB/s (1 MiB reads, as `dd bs=1M`)",
        vec![
            "file",
            "bytes",
            "mount, pages dropped",
            "mount, pages cached",
            "reference, pages dropped",
            "reference, pages cached",
            "mount/ref dropped",
            "mount/ref cached",
        ],
    );
    let row = |what: String, len: u64, o: usize| {
        let (a, c) = (median(&r[o]), median(&r[o + 2]));
        let (a2, c2) = (median(&r[o + 1]), median(&r[o + 3]));
        vec![what, bytes(len), mbs(o), mbs(o + 1), mbs(o + 2), mbs(o + 3), ratio(a, c), ratio(a2, c2)]
    };
    t.rows.push(row(
        format!("cached variant `{}@format,bmp` vs the same bytes in /dev/shm", p.name),
        len as u64,
        0,
    ));
    t.rows.push(row(
        format!("original `{}` vs the source file", p.name),
        fs::metadata(&source).map_err(|e| e.to_string())?.len(),
        4,
    ));
    t.note = format!(
        "Medians of {reps} (pages dropped) and {} (pages cached; the two alternate which goes first, CPU caches flushed before each read); the variant from a fresh mount and tmpfs copy each repetition. \"Pages dropped\" = POSIX_FADV_DONTNEED on the file before reading. For originals also on the source file, so the bytes come from disk. A variant of 256 KiB or more is read by passthrough from imgfs's memory file, which, like tmpfs, ignores DONTNEED: then both of its columns are memory reads; without passthrough, DONTNEED drops the variant's page cache and the bytes come from imgfs's cache through FUSE. \"Pages cached\" = hot pages, after one untimed read of each file (a repeated read never reaches imgfs: passthrough, or FOPEN_KEEP_CACHE without it). Passthrough for originals and large variants: {passthrough}. The variant's conversion (first read) took {} (median).",
        reps * hot,
        secs(median(&conversions))
    );
    Ok(vec![t])
}

/// `ls -l` of a directory of many small files, through the mount vs the source.
pub fn ls(b: &Bench) -> Res<Vec<Table>> {
    let count = if b.smoke { 1000 } else { 10_000 };
    let dir = b.photo_dir.join("many");
    if fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) != count {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for i in 0..count {
            fs::write(dir.join(format!("file-{i:05}.txt")), format!("small file {i}\n"))
                .map_err(|e| e.to_string())?;
        }
    }
    let m = Mount::start(b, &[], "ls")?;
    let ls = |d: &Path| run(Command::new("ls").arg("-l").arg(d).env("LC_ALL", "C"));
    let reps = if b.smoke { 2 } else { b.reps.max(5) };
    let (mut cold, mut warm, mut src) = (vec![], vec![], vec![]);
    for _ in 0..reps {
        sleep(Duration::from_millis(1100)); // > --attr-timeout (1 s): attributes expired
        cold.push(ls(&m.path("many"))?);
        warm.push(ls(&m.path("many"))?);
        src.push(ls(&dir)?);
    }
    let mut t = Table::new(
        format!("`ls -l` of a directory of {count} small files"),
        vec![
            "mount, attributes expired",
            "mount, right after",
            "source dir",
            "mount/source (expired)",
            "mount/source (right after)",
        ],
    );
    let (c, w, s) = (median(&cold), median(&warm), median(&src));
    t.rows.push(vec![secs(c), secs(w), secs(s), ratio(c, s), ratio(w, s)]);
    t.note = format!("Medians of {reps}, `LC_ALL=C ls -l DIR > /dev/null`. \"Expired\" runs 1.1 s after the previous listing (past the default --attr-timeout 1 s); \"right after\" may use the kernel's cached entries and attributes.");
    Ok(vec![t])
}

fn status_kib(pid: u32, key: &str) -> Res<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or(format!("no {key} in /proc/{pid}/status"))
}

/// Peak RSS of the mount under a stream of distinct variants, against the documented bound.
pub fn rss(b: &Bench) -> Res<Vec<Table>> {
    let cache: u64 = 64 << 20;
    let jobs = b.jobs;
    let count = if b.smoke { 4 } else { 30 };
    let formats = ["jpg", "webp", "bmp", "heic", "png"];
    let names: Vec<String> = (0..count)
        .map(|i| {
            let p = &b.photos[i % b.photos.len()];
            // Wider than half the source: the JPEG is decoded at full scale.
            let w = (p.width / 2 + 100 + 100 * i as u32).min(16_000);
            format!("{}@resize,w_{w}@format,{}", p.name, formats[i % formats.len()])
        })
        .collect();
    let jobs_s = jobs.to_string();
    let frame = b.photos.iter().map(|p| u64::from(p.width) * u64::from(p.height) * 3).max().unwrap();
    let bound = cache + (jobs as f64 * 1.5 * frame as f64) as u64;
    let mut t = Table::new(
        format!("Peak RSS of the mount, --cache-size 64MiB -j {jobs}, {count} distinct variants"),
        vec![
            "--convert-memory",
            "largest frame (w×h×3)",
            "bound = cache + jobs × 1.5 × frame",
            "VmHWM",
            "VmHWM / bound",
            "VmRSS after",
            "wall",
            "errors",
        ],
    );
    t.note = format!("{jobs} readers in parallel; variants `NAME@resize,w_W@format,F` with W > half the source width (full-scale decode), F cycling {}. The second row lifts the memory gate to show what it costs in wall time.", formats.join(", "));
    for (label, budget) in [("default (jobs × 80 MiB)", None), ("1TiB (no gate)", Some("1TiB"))] {
        let mut args = vec!["--cache-size", "64MiB", "-j", &jobs_s];
        if let Some(budget) = budget {
            args.extend(["--convert-memory", budget]);
        }
        args.extend(BIG);
        let m = Mount::start(b, &args, "rss")?;
        let start = Instant::now();
        let errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..jobs)
                .map(|k| {
                    let (names, m) = (&names, &m);
                    s.spawn(move || {
                        names
                            .iter()
                            .skip(k)
                            .step_by(jobs)
                            .filter_map(|n| fs::read(m.path(n)).err().map(|e| format!("{n}: {e}")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let wall = start.elapsed().as_secs_f64();
        let hwm = status_kib(m.pid(), "VmHWM:")? * 1024;
        let now = status_kib(m.pid(), "VmRSS:")? * 1024;
        t.rows.push(vec![
            label.into(),
            mib(frame),
            mib(bound),
            mib(hwm),
            ratio(hwm as f64, bound as f64),
            mib(now),
            secs(wall),
            errors.len().to_string(),
        ]);
        if !errors.is_empty() {
            t.note += &format!(" Errors: {}", errors.join("; "));
            return Err(t.markdown());
        }
    }
    // Where the memory goes: one `imgfs convert` of the largest photo at full size per format.
    let p = b.photos.iter().max_by_key(|p| p.width * p.height).unwrap();
    let frame = u64::from(p.width) * u64::from(p.height) * 3;
    let mut one = Table::new(
        format!("Peak RSS of one full-size `imgfs convert` of {} (frame {})", p.name, mib(frame)),
        vec!["format", "peak RSS", "peak RSS / frame"],
    );
    for fmt in ["jpg", "bmp", "png", "webp", "heic", "avif"] {
        let out = b.work.join(format!("out/rss.{fmt}"));
        let mut cmd = Command::new(&b.imgfs);
        cmd.arg("convert").arg(&p.path).arg(format!("format,{fmt}")).arg("-o").arg(&out).args(BIG);
        let rss = peak_rss(&mut cmd)?;
        one.rows.push(vec![fmt.into(), mib(rss), ratio(rss as f64, frame as f64)]);
    }
    one.note =
        "VmHWM polled every 2 ms; includes the process's fixed part (a tiny conversion peaks near 18 MiB)."
            .into();
    Ok(vec![t, one])
}
