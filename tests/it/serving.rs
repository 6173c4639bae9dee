//! Issue 16: an origin that answers like one. Bad requests are 4xx through the shipped
//! nginx config (never a 500 with a `[crit]` line), python's http.server and Caddy send
//! each variant's Content-Type with the shipped contrib files, and the metrics are served
//! on nginx's private port. Mounts: root and `/dev/fuse` needed.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use imgfs::error::Errnos;
use imgfs::limits::Limits;
use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

use crate::common::nginx::{self, Nginx};
use crate::common::{bin, free_port, make_every_format, make_jpeg, Mount};

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A mount of every format, `big.jpg` over the side limit, and a page that is no image.
fn origin(errors: Errnos) -> Mount {
    let options = MountOptions {
        errors,
        ..MountOptions::default()
    };
    let settings = Settings {
        limits: Limits {
            max_source_side: 2000,
            ..Limits::default()
        },
        ..Settings::default()
    };
    Mount::with(options, settings, Styles::default(), |src| {
        make_every_format(src);
        make_jpeg(&src.join("big.jpg"), 2400, 16);
        fs::write(src.join("index.html"), "<html>not an image</html>").unwrap();
    })
}

/// Every row of README's table "Errors through a web server": (name, status).
const BAD_REQUESTS: &[(&str, u32)] = &[
    ("missing.jpg@format,webp", 404),  // no such source
    ("photo.jpg@resize,w_abc", 404),   // does not parse
    ("photo.jpg@bogus,x_1", 404),      // unknown operation
    ("photo.jpg@resize,w_99999", 404), // out of range
    ("photo.jpg@format,xyz", 404),     // unknown format
    ("photo.jpg@@", 404),              // empty operation
    ("photo.jpg@", 404),               // trailing @
    ("big.jpg@resize,w_10", 404),      // source over the limits
    ("index.html@resize,w_10", 404),   // not an image
    ("photo.jpg@resize,w_10", 200),    // the control: a good request
];

#[test]
fn bad_requests_are_404_through_nginx_with_web_errnos() {
    let m = origin(Errnos::Web);
    let nginx = Nginx::serve(&m.mnt);
    let long = format!("photo.jpg@{}", "resize,w_10@".repeat(30));
    let mut rows: Vec<(&str, u32)> = BAD_REQUESTS.to_vec();
    rows.push((&long, 404)); // a name over NAME_MAX
    for &(name, status) in &rows {
        let (got, headers, _) = nginx.get(name);
        assert_eq!(got, status, "{name}: {headers}");
    }
    let log = nginx.error_log();
    assert!(
        !log.contains("[crit]") && !log.contains("[error]"),
        "bad requests are not the server's errors:\n{log}"
    );
}

/// The default errnos stay precise for shells, and nginx makes a 500 of them: the reason
/// `--errors web` exists.
#[test]
fn precise_errnos_stay_for_shells() {
    let m = origin(Errnos::Precise);
    let errno = |name: &str| crate::common::errno_of(fs::metadata(m.path(name)));
    assert_eq!(errno("photo.jpg@resize,w_abc"), libc::EINVAL);
    assert_eq!(errno("big.jpg@resize,w_10"), libc::EFBIG);
    assert_eq!(errno("index.html@resize,w_10"), libc::EIO);
    assert_eq!(errno("missing.jpg@resize,w_10"), libc::ENOENT);
    let nginx = Nginx::serve(&m.mnt);
    assert_eq!(nginx.get("photo.jpg@resize,w_abc").0, 500);
    assert!(nginx.error_log().contains("[crit]"));
}

#[test]
fn metrics_are_served_privately_and_move_with_reads() {
    let m = origin(Errnos::Web);
    let metrics = m.path(".imgfs/metrics");
    let before = fs::read_to_string(&metrics).unwrap();
    assert!(before.contains("\nimgfs_conversions_total 0\n"), "{before}");
    // Through the kernel: stat's size is what a read returns.
    assert_eq!(fs::metadata(&metrics).unwrap().len(), before.len() as u64);
    let listed: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!listed.iter().any(|n| n == ".imgfs"), "{listed:?}");

    let nginx = Nginx::serve(&m.mnt);
    assert_eq!(nginx.get("photo.jpg@format,webp").0, 200);
    assert_eq!(nginx.get("photo.jpg@format,webp").0, 200);
    assert_eq!(
        nginx.get(".imgfs/metrics").0,
        404,
        "not on the public server"
    );
    std::thread::sleep(Duration::from_millis(1100)); // a rendering lives a second
    let (status, headers, body) = nginx.metrics();
    assert_eq!(status, 200, "{headers}");
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        header(&headers, "Content-Length"),
        Some(text.len().to_string().as_str())
    );
    assert!(text.contains("\nimgfs_conversions_total 1\n"), "{text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("imgfs_cache_hits_total{tier=\"memory\"} ") && !l.ends_with(" 0")
        ),
        "{text}"
    );

    let out = Command::new(bin())
        .arg("stats")
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("conversions    1, 0 failed"), "{summary}");
}

/// A server process on a loopback port, stopped on drop.
struct Server(Child);

impl Server {
    fn start(command: &mut Command, port: u16) -> Server {
        let mut child = command
            .spawn()
            .expect("server (run scripts/setup-debian.sh)");
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not listen on {port}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Names and the Content-Type every shipped config must send for them.
const TYPES: &[(&str, &str)] = &[
    ("photo.jpg@resize,w_100@format,webp", "image/webp"),
    ("photo.png@format,avif", "image/avif"),
    ("photo.jpg@format,heic@resize,w_50", "image/heic"),
    ("photo.jpg@resize,w_120", "image/jpeg"),
    ("photo.webp@resize,w_120", "image/webp"),
    ("photo.gif@format,png", "image/png"),
    ("photo.jpg@format,png@info", "application/json"),
];

fn check_types(port: u16, mnt: &Path, server: &str) {
    for &(name, content_type) in TYPES {
        let (status, headers, body) = nginx::get(port, name);
        assert_eq!(status, 200, "{server} {name}: {headers}");
        assert_eq!(body, fs::read(mnt.join(name)).unwrap(), "{server} {name}");
        let sent = header(&headers, "Content-Type").unwrap_or("none");
        assert!(
            sent.starts_with(content_type),
            "{server} {name}: {sent}, not {content_type}"
        );
    }
    for &(name, status) in BAD_REQUESTS {
        assert_eq!(nginx::get(port, name).0, status, "{server} {name}");
    }
}

#[test]
fn python_http_server_sends_each_variants_type() {
    let m = origin(Errnos::Web);
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/imgfs-http-server.py");
    let _server = Server::start(
        Command::new("python3")
            .arg(script)
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(&m.mnt)
            .arg(port.to_string()),
        port,
    );
    check_types(port, &m.mnt, "python");
}

#[test]
fn caddy_sends_each_variants_type() {
    let m = origin(Errnos::Web);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/Caddyfile")).unwrap();
    let site = shipped
        .replace(":8080 {", &format!("http://127.0.0.1:{port} {{"))
        .replace("root * /mnt/img", &format!("root * {}", m.mnt.display()));
    assert!(!site.contains("/mnt/img") && site.contains(&port.to_string()));
    let config = dir.path().join("Caddyfile");
    fs::write(&config, format!("{{\n\tadmin off\n}}\n{site}")).unwrap();
    let _server = Server::start(
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&config)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path()),
        port,
    );
    check_types(port, &m.mnt, "caddy");
    assert_eq!(nginx::get(port, ".imgfs/metrics").0, 404, "not public");
}
