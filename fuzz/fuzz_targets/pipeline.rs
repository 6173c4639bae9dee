//! Decode + pipeline on arbitrary bytes with small limits.
//!
//! Input: the first byte picks one of SPECS (modulo its length); the rest is the source
//! file. Property: no panic, every error is one of the filesystem's errno kinds
//! (EINVAL, EFBIG, EIO, ENOENT), and every success is non-empty.
#![no_main]

use std::sync::OnceLock;

use imgfs::limits::Limits;
use imgfs::pipeline::{self, Settings};
use imgfs::spec::{Spec, Styles};
use libfuzzer_sys::fuzz_target;

const SPECS: &[&str] = &[
    "resize,w_64@format,png",
    "format,webp",
    "format,heic@resize,w_32",
    "rotate,45@format,jpg",
    "info",
    "crop,w_10,h_10,g_center@format,gif",
    "average-hue",
    "resize,m_pad,w_40,h_20@format,bmp",
    "blur,r_3,s_2@sharpen,100@quality,q_50@format,jpg",
    "circle,r_20@format,tiff",
    "watermark,text_SGVsbG8,size_12@format,png",
    "indexcrop,x_5,i_1@rounded-corners,r_4@format,avif",
];

fn specs() -> &'static [Spec] {
    static PARSED: OnceLock<Vec<Spec>> = OnceLock::new();
    PARSED.get_or_init(|| {
        SPECS
            .iter()
            .map(|s| Spec::parse(s, &Styles::default()).unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect()
    })
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        limits: Limits {
            max_source_bytes: 1_000_000,
            max_source_side: 2048,
            max_source_pixels: 4_000_000,
            max_output_side: 2048,
            max_output_pixels: 4_000_000,
        },
        ..Default::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, source)) = data.split_first() else {
        return;
    };
    let specs = specs();
    let index = usize::from(selector) % specs.len();
    match pipeline::convert(source, &Default::default(), &specs[index], settings()) {
        Ok(out) => assert!(
            !out.bytes.is_empty(),
            "{}: empty output ({:?})",
            SPECS[index],
            out.format
        ),
        Err(e) => {
            let errno = e.errno();
            assert!(
                [libc::EINVAL, libc::EFBIG, libc::EIO, libc::ENOENT].contains(&errno),
                "{}: error {e:?} has errno {errno}",
                SPECS[index]
            );
        }
    }
});
