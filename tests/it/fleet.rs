//! Issue 13, "A fleet": scripts/fleet-demo.sh started with its flags (three `imgfs mount`s of
//! one source, an nginx per node, the front of contrib/fleet/front.conf), driven through the
//! front: each variant converted on exactly one node, bodies equal to the library's
//! conversions, and a node killed under load without a failed request, only its share
//! converted again. Mounts: root and `/dev/fuse` needed.
//!
//! The issue names `tests/fleet.rs`; this is a module of `tests/it/` instead, because each
//! test binary links libheif, x265 and libjpeg-turbo statically (a second binary would add a
//! minute of linking to every build), and it shares the fixtures here. Run it alone with
//! `cargo test --test it fleet`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use imgfs::spec::Styles;

use crate::common::{bin, convert_name, free_port, is_mounted, make_jpeg};

/// The fleet of scripts/fleet-demo.sh; stopped (and every mount of it gone) on drop.
struct Fleet {
    script: Option<Child>,
    front: u16,
    /// Each node's port and directory (`mnt/`, `imgfs.pid`, `nginx.pid`), in the script's
    /// order.
    nodes: Vec<(u16, PathBuf)>,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn start(source: &Path, front_cache: bool) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let front = free_port();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let metrics: Vec<String> = (0..3).map(|_| free_port().to_string()).collect();
        let list = |ports: &[String]| ports.join(",");
        let mut command = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/fleet-demo.sh"
        ));
        command
            .arg("--bin")
            .arg(bin())
            .arg("--dir")
            .arg(dir.path())
            .args(["--front-port", &front.to_string()])
            .args([
                "--node-ports",
                &list(&ports.iter().map(u16::to_string).collect::<Vec<_>>()),
            ])
            .args(["--metrics-ports", &list(&metrics)])
            .args((!front_cache).then_some("--no-front-cache"))
            .arg(source)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.path().join("script.log")).unwrap());
        let mut script = command.spawn().expect("scripts/fleet-demo.sh");
        let stdout = script.stdout.take().unwrap();
        let (ready, is_ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("fleet ready: ") {
                    let _ = ready.send(());
                }
            }
        });
        let nodes = (1..=3)
            .zip(ports)
            .map(|(i, port)| (port, dir.path().join(format!("node{i}"))))
            .collect();
        let fleet = Fleet {
            script: Some(script),
            front,
            nodes,
            dir,
        };
        if is_ready.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!("the fleet did not come up:\n{}", fleet.script_log());
        }
        fleet
    }

    fn script_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("script.log")).unwrap_or_default()
    }

    fn node_of_port(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.0 == port).unwrap()
    }

    /// Each live node's `imgfs_conversions_total`, from its mount's `.imgfs/metrics`.
    fn conversions(&self, nodes: &[usize]) -> Vec<u64> {
        // A rendering of the metrics is kept for a second: wait out any made before.
        std::thread::sleep(Duration::from_millis(1100));
        nodes
            .iter()
            .map(|&i| {
                let text = fs::read_to_string(self.nodes[i].1.join("mnt/.imgfs/metrics")).unwrap();
                text.lines()
                    .find_map(|l| l.strip_prefix("imgfs_conversions_total "))
                    .unwrap_or_else(|| panic!("no conversions in {text}"))
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    /// A whole host going away: its nginx and its imgfs killed with SIGKILL (its nginx
    /// first, so it never answers 500 for a dead mount). Returns once both are gone.
    fn kill(&self, node: usize) {
        let pids: Vec<i32> = ["nginx.pid", "imgfs.pid"]
            .iter()
            .map(|f| {
                let text = fs::read_to_string(self.nodes[node].1.join(f)).unwrap();
                text.trim().parse().unwrap()
            })
            .collect();
        for &pid in &pids {
            // SAFETY: kill(2) on a pid the script started and has not reaped yet (it waits
            // for its children until it stops).
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
        }
        let start = Instant::now();
        // The script's `wait` reaps them.
        while pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            assert!(start.elapsed() < Duration::from_secs(10), "{pids:?} alive");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The front's access log (contrib/fleet/front.conf's `imgfs_fleet` format) as
    /// (name, status, the nodes asked in order), from line `from` on.
    fn front_log(&self, from: usize) -> Vec<(String, u32, Vec<usize>)> {
        let log = fs::read_to_string(self.dir.path().join("front/access.log")).unwrap();
        log.lines()
            .skip(from)
            .map(|line| {
                let name = line.split("\"GET /").nth(1).unwrap();
                let (name, rest) = name.split_once(" HTTP/").unwrap();
                let status = rest.split(' ').nth(1).unwrap().parse().unwrap();
                let asked = line.split(" upstream=").nth(1).unwrap();
                let asked = asked.split(" upstream_status=").next().unwrap();
                let asked = asked
                    .split(", ")
                    .filter(|a| *a != "-")
                    .map(|a| self.node_of_port(a.rsplit(':').next().unwrap().parse().unwrap()))
                    .collect();
                (name.to_string(), status, asked)
            })
            .collect()
    }

    fn front_log_lines(&self) -> usize {
        fs::read_to_string(self.dir.path().join("front/access.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Stops the script as a service manager would; its exit status. SIGTERM, not SIGINT:
    /// a shell started in the background of a non-interactive shell (a test runner launched
    /// with `&`) inherits SIGINT ignored and cannot trap it, so Ctrl-C's signal would hang here.
    fn stop(&mut self) -> ExitStatus {
        let mut script = self.script.take().unwrap();
        // SAFETY: kill(2) on our own child's pid, not yet waited for.
        unsafe { libc::kill(script.id() as i32, libc::SIGTERM) };
        script.wait().unwrap()
    }

    fn mounts_left(&self) -> Vec<PathBuf> {
        let mounts = self.nodes.iter().map(|n| n.1.join("mnt"));
        mounts.filter(|m| is_mounted(m)).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.script.is_some() {
            self.stop();
        }
        for mnt in self.mounts_left() {
            let _ = Command::new("umount").arg("-l").arg(mnt).status();
        }
    }
}

/// A response's status, header lines and body; an error for a connection that failed or a
/// body shorter than its Content-Length.
fn get(port: u16, name: &str) -> Result<(u32, String, Vec<u8>), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(stream, "GET /{name} HTTP/1.0\r\nHost: fleet\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header")?;
    let head = String::from_utf8_lossy(&response[..end]).to_string();
    let body = response[end + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(length) = header(&head, "Content-Length") {
        if length != body.len().to_string() {
            return Err(format!("{} of {length} bytes", body.len()));
        }
    }
    Ok((status, head, body))
}

fn header<'a>(head: &'a str, key: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// Three small photos and 300 variants of them (many widths: converting each takes
/// milliseconds), with the bytes and Content-Type the front must answer for each.
fn variants(src: &Path) -> Vec<(String, Vec<u8>, &'static str)> {
    make_jpeg(&src.join("a.jpg"), 320, 213);
    make_jpeg(&src.join("b.jpg"), 240, 320);
    make_jpeg(&src.join("c.jpg"), 400, 267);
    let mut names = Vec::new();
    for w in 16..116 {
        names.push((format!("a.jpg@resize,w_{w}"), "image/jpeg"));
        names.push((format!("b.jpg@resize,w_{w}@format,webp"), "image/webp"));
        names.push((format!("c.jpg@resize,w_{w}@format,png"), "image/png"));
    }
    // Spread so that consecutive requests go to different sources and nodes.
    names.sort_by_key(|(n, _)| {
        n.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
    });
    let styles = Styles::default();
    std::thread::scope(|s| {
        let halves: Vec<_> = names
            .chunks(names.len() / 2 + 1)
            .map(|chunk| {
                s.spawn(|| {
                    chunk
                        .iter()
                        .map(|(name, kind)| {
                            let bytes = convert_name(src, &styles, name).unwrap();
                            (name.clone(), bytes, *kind)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// What one request got: when it started and ended, and what was wrong with it, if anything.
struct Outcome {
    name: String,
    started: Instant,
    ended: Instant,
    failure: Option<String>,
}

fn check(port: u16, name: &str, expected: &HashMap<&str, (&[u8], &str)>) -> Option<String> {
    let (bytes, kind) = expected[name];
    match get(port, name) {
        Err(e) => Some(e),
        Ok((200, head, body)) if body == bytes && header(&head, "Content-Type") == Some(kind) => {
            None
        }
        Ok((status, head, body)) => Some(format!(
            "{status}, {} bytes (expected {kind}, {}):\n{head}",
            body.len(),
            bytes.len()
        )),
    }
}

#[test]
fn fleet_converts_each_variant_once_and_survives_a_dead_node() {
    let started = Instant::now();
    let src_dir = tempfile::tempdir().unwrap();
    let variants = variants(src_dir.path());
    let expected: HashMap<&str, (&[u8], &str)> = variants
        .iter()
        .map(|(n, b, k)| (n.as_str(), (b.as_slice(), *k)))
        .collect();
    // Without the front's cache every request reaches a node, so a node's conversions count
    // the variants it was asked for, not only the first request of each.
    let mut fleet = Fleet::start(src_dir.path(), false);
    assert_eq!(fleet.conversions(&[0, 1, 2]), [0, 0, 0]);

    // 1. Every variant twice, from four clients at once.
    let names: Vec<&str> = variants.iter().map(|v| v.0.as_str()).collect();
    let requests: Vec<&str> = names.iter().chain(names.iter()).copied().collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let clients: Vec<_> = requests
            .chunks(requests.len() / 4)
            .map(|chunk| {
                let (fleet, expected) = (&fleet, &expected);
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|n| {
                            check(fleet.front, n, expected).map(|e| format!("{n}: {e}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{failures:#?}");
    let log = fleet.front_log(0);
    assert_eq!(log.len(), requests.len());
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, status, asked) in &log {
        assert_eq!((*status, asked.len()), (200, 1), "{name}: {asked:?}");
        let first = *owner
            .entry(expected.get_key_value(name.as_str()).unwrap().0)
            .or_insert(asked[0]);
        assert_eq!(first, asked[0], "{name} went to two nodes");
    }
    let share: Vec<u64> = (0..3)
        .map(|i| owner.values().filter(|&&o| o == i).count() as u64)
        .collect();
    let conversions = fleet.conversions(&[0, 1, 2]);
    println!(
        "{} requests, {} variants: conversions per node {conversions:?}",
        requests.len(),
        names.len()
    );
    assert_eq!(
        conversions, share,
        "each node converts its own variants, once"
    );
    assert_eq!(conversions.iter().sum::<u64>(), names.len() as u64);
    for (i, &n) in share.iter().enumerate() {
        assert!(n >= names.len() as u64 / 10, "node {i} has {n} of the ring");
    }

    // Bad names are 404 from the node that owns them, and no other node is asked.
    let before = fleet.front_log_lines();
    for bad in [
        "a.jpg@resize,w_abc",
        "a.jpg@resize,w_99999",
        "missing.jpg@resize,w_10",
    ] {
        assert_eq!(get(fleet.front, bad).unwrap().0, 404, "{bad}");
    }
    for (name, status, asked) in fleet.front_log(before) {
        assert_eq!((status, asked.len()), (404, 1), "{name}: asked {asked:?}");
    }

    // 2. Under load from four clients, node 2 dies. Each client goes on until it has asked
    // for every variant after the death.
    const VICTIM: usize = 1;
    let dead_keys: BTreeSet<&str> = owner
        .iter()
        .filter(|o| *o.1 == VICTIM)
        .map(|o| *o.0)
        .collect();
    let log_before = fleet.front_log_lines();
    let done = AtomicUsize::new(0);
    let killed: Arc<OnceLock<(Instant, Instant)>> = Arc::default();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (fleet, expected, names, done, killed) =
                    (&fleet, &expected, &names, &done, &killed);
                s.spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut left = None;
                    for name in names.iter().cycle().skip(c * names.len() / 4) {
                        if left == Some(0) {
                            break;
                        }
                        let started = Instant::now();
                        let failure = check(fleet.front, name, expected);
                        outcomes.push(Outcome {
                            name: name.to_string(),
                            started,
                            ended: Instant::now(),
                            failure,
                        });
                        done.fetch_add(1, Ordering::SeqCst);
                        left = match (left, killed.get()) {
                            (None, Some(_)) => Some(names.len()),
                            (Some(n), _) => Some(n - 1),
                            (None, None) => None,
                        };
                    }
                    outcomes
                })
            })
            .collect();
        while done.load(Ordering::SeqCst) < 200 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let kill_started = Instant::now();
        fleet.kill(VICTIM);
        killed.set((kill_started, Instant::now())).unwrap();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let (kill_started, dead) = *killed.get().unwrap();
    let failed = |o: &Outcome| o.failure.is_some();
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= dead).collect();
    let in_flight: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.started < dead && o.ended >= kill_started)
        .collect();
    let after_failed: Vec<_> = after
        .iter()
        .filter(|o| failed(o))
        .map(|o| (&o.name, &o.failure))
        .collect();
    println!(
        "{} requests under load, {} after the kill ({} failed), {} in flight during it ({} failed); {} of the dead node's variants",
        outcomes.len(),
        after.len(),
        after_failed.len(),
        in_flight.len(),
        in_flight.iter().filter(|o| failed(o)).count(),
        dead_keys.len()
    );
    assert!(after_failed.is_empty(), "{after_failed:#?}");
    assert!(
        outcomes
            .iter()
            .filter(|o| failed(o))
            .all(|o| o.ended >= kill_started),
        "failed before the kill"
    );

    // Who answered after the death: each of the dead node's variants one survivor, always
    // the same (the next on the ring); every other variant its own node, with no retry.
    let mut heir: BTreeMap<&str, usize> = BTreeMap::new();
    let log = fleet.front_log(log_before);
    for (name, status, asked) in &log {
        // Not one error from the front, even for requests in flight during the death.
        assert_eq!(
            *status, 200,
            "{name}: the front answered {status}, asked {asked:?}"
        );
        let answered = *asked.last().unwrap();
        let name = *expected.get_key_value(name.as_str()).unwrap().0;
        if dead_keys.contains(name) {
            if answered != VICTIM {
                let first = *heir.entry(name).or_insert(answered);
                assert_eq!(first, answered, "{name} moved to two nodes");
            }
        } else {
            assert_eq!(asked, &[owner[name]], "{name} left its node");
        }
    }
    assert_eq!(
        heir.len(),
        dead_keys.len(),
        "every dead variant was asked again"
    );
    let survivors = [0, 2];
    let grown: Vec<u64> = fleet
        .conversions(&survivors)
        .iter()
        .zip(survivors)
        .map(|(n, i)| n - conversions[i])
        .collect();
    let moved: Vec<u64> = survivors
        .iter()
        .map(|&s| heir.values().filter(|&&h| h == s).count() as u64)
        .collect();
    println!(
        "after the kill, survivors converted {grown:?} (the dead node had {})",
        dead_keys.len()
    );
    assert_eq!(grown, moved, "only the dead node's variants, each once");

    // Ctrl-C stops everything, the dead node's mount too.
    assert!(fleet.stop().success(), "{}", fleet.script_log());
    assert_eq!(fleet.mounts_left(), Vec::<PathBuf>::new());
    println!("fleet test: {:.1} s", started.elapsed().as_secs_f64());
}

/// With the front's cache (the shipped default), a repeat is answered by the front alone,
/// and still when the node that made it has gone.
#[test]
fn fleet_front_cache_answers_repeats_while_their_node_is_gone() {
    let src_dir = tempfile::tempdir().unwrap();
    make_jpeg(&src_dir.path().join("a.jpg"), 320, 213);
    let names: Vec<String> = (20..26).map(|w| format!("a.jpg@resize,w_{w}")).collect();
    let mut fleet = Fleet::start(src_dir.path(), true);
    let fetch = |name: &str| {
        let (status, head, body) = get(fleet.front, name).unwrap();
        assert_eq!(status, 200, "{name}: {head}");
        let expected = convert_name(src_dir.path(), &Styles::default(), name).unwrap();
        assert!(body == expected, "{name}: other bytes");
        header(&head, "X-Cache-Status")
            .unwrap_or("none")
            .to_string()
    };
    for name in &names {
        assert_eq!(fetch(name), "MISS", "{name}");
        assert_eq!(fetch(name), "HIT", "{name}");
    }
    let log = fleet.front_log(0);
    let asked: Vec<usize> = log.iter().map(|l| l.2.len()).collect();
    assert_eq!(asked, [1, 0].repeat(names.len()), "the node is asked once");
    let total: u64 = fleet.conversions(&[0, 1, 2]).iter().sum();
    assert_eq!(total, names.len() as u64);

    let owner = log[0].2[0];
    fleet.kill(owner);
    assert_eq!(fetch(&names[0]), "HIT", "served by the front alone");
    assert!(fleet.stop().success(), "{}", fleet.script_log());
    assert_eq!(fleet.mounts_left(), Vec::<PathBuf>::new());
}
