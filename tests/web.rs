//! Debian's nginx, with the shipped config, serving a mount: exact bytes, lengths and types.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::{free_port, make_every_format, Mount};

/// nginx started on a loopback port with contrib/nginx-imgfs.conf; stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn serve(root: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let shipped = fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/nginx-imgfs.conf"
        ))
        .unwrap();
        let server = shipped
            .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
            .replace("root /mnt/img;", &format!("root {};", root.display()));
        assert!(server.contains(&port.to_string()) && server.contains(root.to_str().unwrap()));
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nuser root;\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n include /etc/nginx/mime.types;\n access_log off;\n\
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
                    _dir: dir,
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
    fn get(&self, name: &str) -> (u32, String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let (headers, body) = (dir.path().join("h"), dir.path().join("b"));
        let url = format!("http://127.0.0.1:{}/{name}", self.port);
        let out = Command::new("curl")
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
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn nginx_serves_exact_bytes_lengths_and_types() {
    let m = Mount::new_with_files(|src| {
        make_every_format(src);
    });
    let nginx = Nginx::serve(&m.mnt);
    let cases = [
        ("photo.jpg@format,heic@resize,l_200", "image/heic"),
        ("photo.jpg@resize,w_100@format,webp", "image/webp"),
        ("photo.png@format,avif", "image/avif"),
        ("photo.jpg@format,png@resize,w_50", "image/png"),
        ("photo.webp@resize,w_120", "image/webp"),
        ("photo.jpg@resize,w_120", "image/jpeg"),
        ("photo.gif@format,jpeg", "image/jpeg"),
        ("photo.jpg@info", "application/json"),
        ("photo.jpg@resize,w_10@average-hue", "application/json"),
        ("photo.jpg", "image/jpeg"),
    ];
    for (name, content_type) in cases {
        let (status, headers, body) = nginx.get(name);
        assert_eq!(status, 200, "{name}: {headers}");
        let direct = fs::read(m.path(name)).unwrap();
        assert_eq!(body, direct, "{name}: bytes differ from a direct read");
        let size = fs::metadata(m.path(name)).unwrap().len();
        assert_eq!(
            header(&headers, "Content-Length"),
            Some(size.to_string().as_str()),
            "{name}"
        );
        assert_eq!(
            header(&headers, "Content-Type"),
            Some(content_type),
            "{name}"
        );
    }
    // Errors map to HTTP the way nginx maps errno: ENOENT 404, EINVAL/EIO 500-class or 403.
    let (status, _, _) = nginx.get("missing.jpg@format,webp");
    assert_eq!(status, 404);
    let (status, _, _) = nginx.get("photo.jpg@resize,w_0");
    assert_ne!(status, 200);
}
