//! The disk tier without a mount: round trips, damage of every kind, the bound, restarts.

use super::*;
use crate::cache::test_key as key;

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn open(dir: &Path, capacity: u64) -> Arc<DiskCache> {
    DiskCache::open(dir, capacity, "settings".into()).unwrap()
}

fn path_of(disk: &DiskCache, key: &Key) -> PathBuf {
    disk.place(key).2
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[test]
fn small_and_large_entries_come_back_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = (bytes(1000, 1), bytes(MEMORY_FILE_MIN + 5, 2));
    {
        let disk = open(dir.path(), 1 << 30);
        assert!(disk.get(&key(1)).is_none());
        disk.put(&key(1), &small).unwrap();
        disk.put(&key(2), &large).unwrap();
        assert!(disk.contains(&key(1)) && !disk.contains(&key(3)));
        assert_eq!(count(&disk.stats.writes), 2);
        assert_eq!(count(&disk.stats.misses), 1);
    }
    let disk = open(dir.path(), 1 << 30);
    assert_eq!(disk.len(), 2);
    let got = disk.get(&key(1)).unwrap();
    assert!(got.backing_file().is_none());
    assert_eq!(got.bytes(), &small[..]);
    let got = disk.get(&key(2)).unwrap();
    assert_eq!(got.bytes(), &large[..]);
    assert!(
        got.backing_file().is_some(),
        "large entries are served from their file"
    );
    assert_eq!(count(&disk.stats.hits), 2);
    // Other settings are other keys.
    let other = DiskCache::open(dir.path(), 1 << 30, "other settings".into()).unwrap();
    assert!(other.get(&key(1)).is_none());
}

#[test]
fn damaged_truncated_and_foreign_files_are_deleted_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let disk = open(dir.path(), 1 << 30);
    // What each does to the entry's file, given another entry's file.
    type Damage = fn(&Path, &Path);
    let damage: [(&str, Damage); 4] = [
        ("a flipped byte", |path, _| {
            let mut data = std::fs::read(path).unwrap();
            data[10] ^= 0xff;
            // Written in place, as a disk error would: the header stays.
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .write_all(&data)
                .unwrap();
        }),
        ("truncated", |path, _| {
            let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            file.set_len(100).unwrap();
        }),
        ("a foreign file", |path, _| {
            std::fs::remove_file(path).unwrap();
            std::fs::write(path, b"not an entry").unwrap();
        }),
        ("another key's entry copied over it", |path, other| {
            let header = header_of(&File::open(other).unwrap()).unwrap();
            std::fs::remove_file(path).unwrap();
            std::fs::copy(other, path).unwrap();
            let file = File::options().write(true).open(path).unwrap();
            fsetxattr(&file, XATTR, &header.encode(), XattrFlags::empty()).unwrap();
        }),
    ];
    for (n, (what, damage)) in damage.into_iter().enumerate() {
        let (k, other) = (key(10 + n as u64), key(100 + n as u64));
        disk.put(&k, &bytes(300_000, n as u8)).unwrap();
        disk.put(&other, &bytes(300_000, 99)).unwrap();
        let path = path_of(&disk, &k);
        damage(&path, &path_of(&disk, &other));
        assert!(disk.get(&k).is_none(), "{what} was served");
        assert!(!path.exists(), "{what} was not deleted");
        assert!(!disk.contains(&k));
        assert_eq!(count(&disk.stats.corrupt), n as u64 + 1, "{what}");
    }
}

#[test]
fn the_bound_holds_least_recently_used_first_and_too_large_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let entry = index::cost(10_000);
    // The directories' blocks come off the bound first.
    let disk = open(dir.path(), index::DIRECTORIES_COST + 3 * entry);
    for n in 0..3 {
        disk.put(&key(n), &bytes(10_000, n as u8)).unwrap();
    }
    assert!(disk.get(&key(0)).is_some()); // 0 is now the most recent
    disk.put(&key(3), &bytes(10_000, 3)).unwrap();
    assert!(disk.bytes() <= 3 * entry);
    assert!(disk.get(&key(1)).is_none());
    assert!(disk.get(&key(0)).is_some() && disk.get(&key(3)).is_some());
    assert_eq!(count(&disk.stats.evictions), 1);
    disk.put(&key(4), &bytes(4 * entry as usize, 4)).unwrap();
    assert!(!disk.contains(&key(4)));
    // Reopened with a smaller bound, it evicts at once.
    let smaller = open(dir.path(), index::DIRECTORIES_COST + entry);
    assert_eq!(smaller.len(), 1);
}

#[test]
fn a_write_that_fails_leaves_no_entry_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let disk = open(dir.path(), 1 << 30);
    let path = path_of(&disk, &key(1));
    // A directory in the entry's place makes the rename fail.
    std::fs::create_dir_all(path.join("blocker")).unwrap();
    assert!(disk.put(&key(1), &bytes(100, 1)).is_err());
    assert_eq!(count(&disk.stats.write_errors), 1);
    assert!(disk.get(&key(1)).is_none());
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the blocker: {left:?}");
}

#[test]
fn two_caches_on_one_directory_see_each_others_entries_and_vanished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), 1 << 30), open(dir.path(), 1 << 30));
    a.put(&key(1), &bytes(5000, 1)).unwrap();
    assert_eq!(b.get(&key(1)).unwrap().bytes(), &bytes(5000, 1)[..]);
    std::fs::remove_file(path_of(&a, &key(1))).unwrap();
    assert!(a.get(&key(1)).is_none());
    assert_eq!(
        count(&a.stats.corrupt),
        0,
        "a vanished entry is a plain miss"
    );
}

/// A relative cache directory (`imgfs warm SRC SPEC --disk-cache cache`) stored nothing:
/// each entry's temporary file was made at the directory joined to itself.
#[test]
fn a_relative_directory_holds_entries() {
    let dir = tempfile::tempdir_in("target").unwrap();
    let relative = dir
        .path()
        .strip_prefix(std::env::current_dir().unwrap())
        .unwrap_or(dir.path());
    assert!(relative.is_relative(), "{}", relative.display());
    let disk = open(relative, 1 << 30);
    disk.put(&key(1), &bytes(1000, 1)).unwrap();
    assert_eq!(disk.get(&key(1)).unwrap().len(), 1000);
}

#[test]
fn a_mounts_cache_serves_at_once_and_counts_the_directory_when_its_scan_ends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let disk = open(dir.path(), 1 << 30);
        for n in 0..50 {
            disk.put(&key(n), &bytes(5000, n as u8)).unwrap();
        }
    }
    let disk = DiskCache::open_or_log(dir.path(), 1 << 30, "settings".into()).unwrap();
    assert_eq!(disk.get(&key(7)).unwrap().bytes(), &bytes(5000, 7)[..]);
    let started = Instant::now();
    while disk.len() < 50 {
        assert!(started.elapsed().as_secs() < 10, "the scan did not end");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(disk.len(), 50);
    assert_eq!(disk.bytes(), 50 * index::cost(5000));
    // A directory that cannot hold entries: no cache, the mount runs without.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    assert!(DiskCache::open_or_log(&file, 1 << 30, "settings".into()).is_none());
}

#[test]
fn a_directory_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o777, 0o770, 0o702, 0o1777] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let Err(err) = DiskCache::open(dir.path(), 1 << 30, "settings".into()) else {
            panic!("mode {mode:o} was taken");
        };
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{mode:o}");
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
    }
    for mode in [0o700, 0o755] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        assert!(DiskCache::open(dir.path(), 1 << 30, "settings".into()).is_ok());
    }
    // A mount runs without a refused directory, and nothing is written into it.
    let other = tempfile::tempdir().unwrap();
    std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(DiskCache::open_or_log(other.path(), 1 << 30, "settings".into()).is_none());
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
}

#[test]
fn a_directory_whose_ancestor_others_could_replace_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    let cache = shared.join("mine/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(shared.join("mine"), &link).unwrap();
    // Anyone may rename `mine` away and put their own in its place.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    for path in [cache.clone(), link.join("cache")] {
        let Err(err) = DiskCache::open(&path, 1 << 30, "settings".into()) else {
            panic!("{} was taken", path.display());
        };
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(
            err.to_string()
                .contains(&format!("ancestor {} is writable", shared.display())),
            "{err}"
        );
    }
    // Sticky, as /tmp is: nobody renames an entry they do not own.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(DiskCache::open(&cache, 1 << 30, "settings".into()).is_ok());
    // An ancestor another user owns, they may make writable.
    if rustix::process::geteuid().is_root() {
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
        let Err(err) = DiskCache::open(&cache, 1 << 30, "settings".into()) else {
            panic!("{} was taken", cache.display());
        };
        assert!(err.to_string().contains("is owned by uid 65534"), "{err}");
    }
}

#[test]
fn a_directory_another_user_owns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let me = rustix::process::geteuid().as_raw();
    // As root, give it away; as anyone else, the root-owned `/` is another user's.
    let (theirs, owner) = if me == 0 {
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        (theirs.as_path(), 65534)
    } else {
        (Path::new("/"), 0)
    };
    let Err(err) = DiskCache::open(theirs, 1 << 30, "settings".into()) else {
        panic!("{} was taken", theirs.display());
    };
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(
        err.to_string().contains(&format!("owned by uid {owner}")),
        "{err}"
    );
}

#[test]
fn a_cache_directory_in_the_source_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("photos");
    let elsewhere = dir.path().join("cache");
    std::fs::create_dir_all(source.join("album")).unwrap();
    std::os::unix::fs::symlink(&source, dir.path().join("link")).unwrap();
    for inside in [
        source.clone(),
        source.join("album"),
        source.join("not/yet/made"),
        dir.path().join("link/cache"),
        elsewhere.join("../photos/cache"),
    ] {
        let err = refuse_inside(&inside, &source).expect_err(&inside.display().to_string());
        assert!(
            err.to_string().contains("inside the source directory"),
            "{err}"
        );
        if inside.ends_with("made") {
            assert!(!source.join("not").exists(), "nothing is created to judge");
        }
    }
    for outside in [
        elsewhere.clone(),
        dir.path().to_path_buf(),
        source.join("../cache"),
        PathBuf::from("/nonexistent/imgfs-cache"),
    ] {
        refuse_inside(&outside, &source).unwrap();
    }
}
