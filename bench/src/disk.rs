//! The disk cache (issue 12): the first read of a full-size HEIC variant after a remount (a
//! disk hit) against reading the same bytes from the cache directory directly, and
//! `imgfs warm` over the photos against the same conversions by `imgfs convert` one by one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::encode::BIG;
use crate::mount::Mount;
use crate::util::{bytes, median, ratio, run, secs, time, Res, Table};
use crate::Bench;

/// The one entry file in a cache directory holding a single entry.
fn only_entry(dir: &Path) -> Res<PathBuf> {
    let mut found = vec![];
    for sub in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if sub.path().is_dir() {
            for f in fs::read_dir(sub.path()).map_err(|e| e.to_string())?.flatten() {
                if !f.file_name().to_string_lossy().starts_with('.') {
                    found.push(f.path());
                }
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("{} entries in {}, expected one", found.len(), dir.display())),
    }
}

/// Drops `path`'s pages from the page cache, so the next read comes from the disk.
fn drop_pages(path: &Path) -> Res<()> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).map_err(|e| e.to_string())
}

fn read(path: &Path) -> Res<(f64, usize)> {
    time(|| fs::read(path).map(|d| d.len()).map_err(|e| format!("{}: {e}", path.display())))
}

/// First read after a remount (lookup, verify, open, read by passthrough) vs `read` of the
/// cache file, both with the page cache dropped and both hot.
pub fn disk_hit(b: &Bench) -> Res<Vec<Table>> {
    let p = b.photos.iter().max_by_key(|p| p.width * p.height).unwrap();
    let name = format!("{}@format,heic", p.name);
    let cache = b.work.join("disk-cache-hit");
    let _ = fs::remove_dir_all(&cache);
    let dir_arg = cache.to_string_lossy().to_string();
    let args = ["--disk-cache", dir_arg.as_str(), BIG[0], BIG[1]];
    let (t_convert, len) = {
        let m = Mount::start(b, &args, "disk")?;
        read(&m.path(&name))?
    }; // dropped: unmounted once the entry is written
    let entry = only_entry(&cache)?;
    let reps = if b.smoke { 2 } else { 10 };
    let (mut cold, mut hot) = ([vec![], vec![]], [vec![], vec![]]);
    for rep in 0..reps {
        // Alternate which side goes first.
        for side in if rep % 2 == 0 { [0, 1] } else { [1, 0] } {
            drop_pages(&entry)?;
            if side == 0 {
                let m = Mount::start(b, &args, "disk")?;
                cold[0].push(read(&m.path(&name))?.0);
                drop(m);
                let m = Mount::start(b, &args, "disk")?;
                read(&entry)?; // pages in
                hot[0].push(read(&m.path(&name))?.0);
                if !m.log_text().contains("disk cache") || m.log_text().contains(" converted ") {
                    return Err(format!("not a disk hit: {}", m.log_text()));
                }
            } else {
                cold[1].push(read(&entry)?.0);
                hot[1].push(read(&entry)?.0);
            }
        }
    }
    let mut t = Table::new(
        "Disk cache: first read of a variant after a remount vs the cache file read directly",
        vec!["variant", "bytes", "pages", "mount (disk hit)", "cache file", "speed mount/direct"],
    );
    for (what, r) in [("dropped", &cold), ("cached", &hot)] {
        let (m, d) = (median(&r[0]), median(&r[1]));
        t.rows.push(vec![format!("`{name}`"), bytes(len as u64), what.into(), secs(m), secs(d), ratio(d, m)]);
    }
    t.note = format!(
        "Medians of {reps}. The mount side is the whole first access of the name on a fresh mount of an existing cache directory: lookup (open, header check, xxh3 of the whole file, map), open, and reading every byte (passthrough from the cache file); the direct side is `read` of the cache file. \"dropped\" = POSIX_FADV_DONTNEED on the cache file before each side. Speed ratio = direct time / mount time (target ≥ 0.9×). The conversion that filled the cache took {}.",
        secs(t_convert)
    );
    Ok(vec![t, scan(b)?])
}

/// Opening a cache directory of 100,000 entries: the scan that rebuilds the index (issue 12
/// asks for it to be measured). A mount runs it on a thread of its own and answers at once.
fn scan(b: &Bench) -> Res<Table> {
    use imgfs::cache::disk::DiskCache;
    use imgfs::cache::{Key, Version};
    use imgfs::source::Identity;
    let entries: u64 = if b.smoke { 2_000 } else { 100_000 };
    let dir = b.work.join("disk-cache-scan");
    let _ = fs::remove_dir_all(&dir);
    let open = || DiskCache::open(&dir, u64::MAX, "bench".into()).map_err(|e| e.to_string());
    let filled = std::time::Instant::now();
    {
        let disk = open()?;
        for ino in 0..entries {
            let identity = Identity { dev: 1, ino, size: 10, mtime_ns: 5, birth_ns: 0 };
            let key = Key { version: Version::of(identity), spec: "format,png".into() };
            disk.put(&key, &[ino as u8; 64]).map_err(|e| e.to_string())?;
        }
    }
    let filled = filled.elapsed().as_secs_f64();
    let mut t = Table::new(
        "Disk cache: opening a directory of many entries (the index rebuilt by a scan)",
        vec!["entries", "dentries and inodes", "scan", "per entry"],
    );
    // Cold: the kernel's dentry and inode caches dropped first (root only; else noted).
    let dropped = fs::write("/proc/sys/vm/drop_caches", "2").is_ok();
    for state in [if dropped { "dropped" } else { "as found (not root)" }, "cached"] {
        let (took, found) = time(|| open().map(|disk| disk.len()))?;
        if found as u64 != entries {
            return Err(format!("the scan found {found} of {entries} entries"));
        }
        t.rows.push(vec![
            entries.to_string(),
            state.into(),
            secs(took),
            format!("{:.1} µs", took / entries as f64 * 1e6),
        ]);
    }
    t.note = format!("`DiskCache::open` (synchronous, as `imgfs warm` uses it; a mount scans on a thread of its own and serves hits before the scan ends). Entries of 64 bytes in {}; writing them took {}.", dir.display(), secs(filled));
    let _ = fs::remove_dir_all(&dir);
    Ok(t)
}

/// `imgfs warm` over the photos vs `imgfs convert` of the same photos and specs, one by one.
pub fn warm(b: &Bench) -> Res<Vec<Table>> {
    let specs = ["resize,l_900@format,webp", "resize,l_900@format,heic"];
    // The photos alone (the photo directory also holds the `ls` case's files).
    let photos = b.work.join("warm-photos");
    let _ = fs::remove_dir_all(&photos);
    fs::create_dir_all(&photos).map_err(|e| e.to_string())?;
    for p in &b.photos {
        fs::copy(&p.path, photos.join(&p.name)).map_err(|e| e.to_string())?;
    }
    let cache = b.work.join("disk-cache-warm");
    let (mut warm, mut one_by_one) = (vec![], vec![]);
    let reps = if b.smoke { 1 } else { b.reps };
    for rep in 0..reps {
        for side in if rep % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                let _ = fs::remove_dir_all(&cache);
                warm.push(run(Command::new(&b.imgfs)
                    .arg("warm")
                    .arg(&photos)
                    .args(specs)
                    .arg("--disk-cache")
                    .arg(&cache))?);
            } else {
                let start = std::time::Instant::now();
                for p in &b.photos {
                    for spec in specs {
                        let out = b.work.join("out/warm-convert");
                        run(Command::new(&b.imgfs)
                            .arg("convert")
                            .arg(photos.join(&p.name))
                            .arg(spec)
                            .arg("-o")
                            .arg(&out))?;
                    }
                }
                one_by_one.push(start.elapsed().as_secs_f64());
            }
        }
    }
    let (w, c) = (median(&warm), median(&one_by_one));
    let mut t = Table::new(
        "`imgfs warm` vs `imgfs convert` one by one",
        vec!["conversions", "specs", "warm", "convert one by one", "warm/convert"],
    );
    t.rows.push(vec![
        (b.photos.len() * specs.len()).to_string(),
        specs.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
        secs(w),
        secs(c),
        ratio(w, c),
    ]);
    t.note = format!(
        "Wall time, medians of {reps}, sides alternating; warm into an emptied cache directory with its default --jobs ({} cores). Target ≤ 0.6×.",
        b.jobs
    );
    Ok(vec![t])
}
