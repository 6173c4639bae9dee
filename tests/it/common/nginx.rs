//! nginx started on a loopback port with the shipped contrib/nginx-imgfs.conf.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::free_port;

/// nginx started on a loopback port with contrib/nginx-imgfs.conf; stopped on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    /// The private server's port, where `/metrics` is the mount's metrics.
    pub metrics_port: u16,
    /// nginx's prefix: its config, logs (error.log, access.log) and scratch files.
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx in one process, as root (any mount is readable).
    pub fn serve(root: &Path) -> Nginx {
        Nginx::start(root, None)
    }

    /// nginx as Debian runs it: a root master, workers as `user` (www-data).
    pub fn serve_as(root: &Path, user: &str) -> Nginx {
        Nginx::start(root, Some(user))
    }

    fn start(root: &Path, worker_user: Option<&str>) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let (port, metrics_port) = (free_port(), free_port());
        let shipped = fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/nginx-imgfs.conf"
        ))
        .unwrap();
        let server = shipped
            .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
            .replace(
                "listen 127.0.0.1:9180;",
                &format!("listen 127.0.0.1:{metrics_port};"),
            )
            .replace("root /mnt/img;", &format!("root {};", root.display()))
            .replace(
                "alias /mnt/img/.imgfs/metrics;",
                &format!("alias {}/.imgfs/metrics;", root.display()),
            );
        assert!(server.contains(&port.to_string()) && server.contains(&metrics_port.to_string()));
        assert!(
            !server
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("/mnt/img")),
            "every path of the shipped config replaced"
        );
        let d = dir.path().display();
        let process = match worker_user {
            None => "master_process off;\nuser root;".to_string(),
            Some(user) => format!("master_process on;\nuser {user};"),
        };
        let conf = format!(
            "daemon off;\n{process}\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n include /etc/nginx/mime.types;\n access_log {d}/access.log;\n\
             client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{server}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new("/usr/sbin/nginx")
            .args([
                "-c",
                conf_path.to_str().unwrap(),
                "-p",
                dir.path().to_str().unwrap(),
            ])
            .spawn()
            .expect("nginx (run scripts/setup-debian.sh)");
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx {
                    child,
                    port,
                    metrics_port,
                    dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nginx did not listen: {}",
            fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// (status, headers, body) as curl receives them.
    pub fn get(&self, name: &str) -> (u32, String, Vec<u8>) {
        get(self.port, name)
    }

    /// A GET with extra request headers (`If-None-Match: ...`).
    pub fn get_with(&self, name: &str, request_headers: &[&str]) -> (u32, String, Vec<u8>) {
        request(self.port, name, request_headers)
    }

    /// What the private server answers for `/metrics`.
    pub fn metrics(&self) -> (u32, String, Vec<u8>) {
        get(self.metrics_port, "metrics")
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// (status, headers, body) of `http://127.0.0.1:PORT/NAME` as curl receives them.
pub fn get(port: u16, name: &str) -> (u32, String, Vec<u8>) {
    request(port, name, &[])
}

/// Like [`get`], with extra request headers.
fn request(port: u16, name: &str, request_headers: &[&str]) -> (u32, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (headers, body) = (dir.path().join("h"), dir.path().join("b"));
    let url = format!("http://127.0.0.1:{port}/{name}");
    let out = Command::new("curl")
        .args(request_headers.iter().flat_map(|h| ["-H", h]))
        .args([
            "-s",
            "-D",
            headers.to_str().unwrap(),
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &url,
        ])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (
        status,
        fs::read_to_string(headers).unwrap_or_default(),
        fs::read(body).unwrap_or_default(),
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: a master stops its workers on the way out.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
