//! Debian's nginx, with the shipped config, serving a mount: exact bytes, lengths and types.
//! Mounts: root and `/dev/fuse` needed.

use std::fs;

use crate::common::nginx::Nginx;
use crate::common::{make_every_format, Mount};

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
        // 320 KB: kept in a memory file, which the kernel reads by passthrough (sendfile).
        ("photo.jpg@format,bmp", "image/bmp"),
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
