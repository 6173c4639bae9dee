//! Debian's nginx, with the shipped config, serving a mount: exact bytes, lengths and types,
//! validators and caching headers, and the www-data workers that need `-o allow_other`.
//! Mounts: root and `/dev/fuse` needed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use imgfs::options::MountOptions;
use imgfs::pipeline::Settings;
use imgfs::spec::Styles;

use crate::common::nginx::Nginx;
use crate::common::{make_every_format, make_jpeg, Mount};

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

/// A mount of one photo, `-o` as given, below a directory that www-data may search.
fn mount_for_www_data(options: &[&str]) -> Mount {
    let options = MountOptions {
        options: options.iter().map(|o| o.to_string()).collect(),
        ..MountOptions::default()
    };
    let m = Mount::with(options, Settings::default(), Styles::default(), |src| {
        make_jpeg(&src.join("photo.jpg"), 400, 267);
    });
    // The fixture's directory is 0700 (tempfile); the mountpoint's parent must not be.
    let parent = m.mnt.parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    m
}

/// The first thing a new user meets: Debian's nginx runs its workers as www-data, and a FUSE
/// mount answers only its owner unless mounted with allow_other.
#[test]
fn nginx_workers_as_www_data_need_allow_other() {
    let private = mount_for_www_data(&[]);
    let nginx = Nginx::serve_as(&private.mnt, "www-data");
    for name in ["photo.jpg", "photo.jpg@resize,w_50"] {
        let (status, headers, _) = nginx.get(name);
        assert_eq!(status, 403, "{name} without allow_other: {headers}");
    }
    drop(nginx);
    let shared = mount_for_www_data(&["allow_other"]);
    let nginx = Nginx::serve_as(&shared.mnt, "www-data");
    for name in ["photo.jpg", "photo.jpg@resize,w_50"] {
        let (status, headers, body) = nginx.get(name);
        assert_eq!(status, 200, "{name} with allow_other: {headers}");
        assert_eq!(body, fs::read(shared.path(name)).unwrap(), "{name}");
    }
}

#[test]
fn nginx_sends_validators_and_cache_control() {
    let m = Mount::new_with_files(|src| make_jpeg(&src.join("photo.jpg"), 400, 267));
    let nginx = Nginx::serve(&m.mnt);
    for (name, cache_control) in [
        (
            "photo.jpg@resize,w_100@format,webp",
            "public, max-age=2592000",
        ),
        ("photo.jpg@info", "public, max-age=2592000"),
        ("photo.jpg", "public, max-age=3600"),
    ] {
        let (status, headers, _) = nginx.get(name);
        assert_eq!(status, 200, "{name}: {headers}");
        assert_eq!(
            header(&headers, "Cache-Control"),
            Some(cache_control),
            "{name}"
        );
        // nginx's ETag is "mtime-size" in hex, from stat of the name on the mount.
        let meta = fs::metadata(m.path(name)).unwrap();
        let etag = format!("\"{:x}-{:x}\"", meta.mtime(), meta.len());
        assert_eq!(header(&headers, "ETag"), Some(etag.as_str()), "{name}");
        assert!(
            header(&headers, "Last-Modified").is_some(),
            "{name}: {headers}"
        );
        let (status, headers, body) = nginx.get_with(name, &[&format!("If-None-Match: {etag}")]);
        assert_eq!(status, 304, "{name}: {headers}");
        assert!(body.is_empty());
        assert_eq!(
            header(&headers, "Cache-Control"),
            Some(cache_control),
            "{name}"
        );
    }
}
