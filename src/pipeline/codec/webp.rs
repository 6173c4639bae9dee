//! Lossy WebP through libwebp at method 6 ("WebP M6"), alpha kept, ICC/EXIF in VP8X chunks.
//!
//! Pixels are imported straight into libwebp's YUV 4:2:0 picture, as `cwebp` does (the webp
//! crate imports into ARGB first: 4 bytes a pixel and a second conversion), and the RGB frame
//! is dropped before the encode, so a 20 MP encode holds about half a frame, not two.

use image::DynamicImage;
use img_parts::webp::WebP;
use img_parts::{Bytes, ImageEXIF, ImageICC};
use libwebp_sys as sys;

use super::{encode_error, EncodeRequest};
use crate::error::Result;
use crate::spec::Format;

/// libwebp's slowest, smallest setting (docs/operations.md: "WebP M6").
pub const METHOD: i32 = 6;
/// Loop-filter strength (libwebp's default 60). Measured (docs/benchmarks.md, "WebP tuning"):
/// 80 gives 0.93× cwebp's bytes at equal SSIMULACRA2 and DSSIM on tiles of the benchmark
/// photos (0.73–0.85× on smooth skies, 0.99–1.01× on detail) at the same time.
pub const FILTER_STRENGTH: i32 = 80;

/// A libwebp picture that frees its planes on drop.
struct Picture(sys::WebPPicture);

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: a Picture is only made from WebPPicture::new (WebPPictureInit), so its planes
        // are null or libwebp's own allocations, which only this drop frees.
        unsafe { sys::WebPPictureFree(&mut self.0) }
    }
}

/// libwebp's growing output buffer, freed on drop.
struct Writer(sys::WebPMemoryWriter);

impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: a Writer is only made by WebPMemoryWriterInit, so `mem` is null or libwebp's
        // own buffer (grown by WebPMemoryWrite), which only this drop frees.
        unsafe { sys::WebPMemoryWriterClear(&mut self.0) }
    }
}

pub(super) fn encode(image: DynamicImage, request: &EncodeRequest<'_>) -> Result<Vec<u8>> {
    let fail = |what: &str| encode_error(Format::Webp, what);
    let mut config = sys::WebPConfig::new().map_err(|()| fail("libwebp config"))?;
    config.quality = f32::from(request.quality);
    config.method = METHOD;
    config.filter_strength = FILTER_STRENGTH;
    // Multi-threaded analysis: same bytes, less wall time (cwebp -mt).
    config.thread_level = 1;
    // SAFETY: `config` is a live WebPConfig set up by WebPConfigInit; libwebp only reads it.
    if unsafe { sys::WebPValidateConfig(&config) } == 0 {
        return Err(fail("invalid libwebp config"));
    }

    // libwebp's own bound (WebPEncode refuses more); it also keeps the i32 casts below exact.
    let most = sys::WEBP_MAX_DIMENSION;
    if image.width() > most || image.height() > most {
        return Err(fail("more than 16383 px per side"));
    }
    let mut picture = Picture(sys::WebPPicture::new().map_err(|()| fail("libwebp picture"))?);
    picture.0.use_argb = 0;
    picture.0.width = image.width() as i32;
    picture.0.height = image.height() as i32;
    let imported = match &image {
        // SAFETY: the picture's width and height are the image's (≤ 16383, so the casts are
        // exact) and an RgbaImage holds exactly height rows of width × 4 bytes, the stride
        // given: libwebp reads `height` rows of `stride` bytes, all inside the buffer.
        DynamicImage::ImageRgba8(rgba) => unsafe {
            sys::WebPPictureImportRGBA(&mut picture.0, rgba.as_ptr(), rgba.width() as i32 * 4)
        },
        // SAFETY: as above, with an RgbImage's rows of width × 3 bytes.
        DynamicImage::ImageRgb8(rgb) => unsafe {
            sys::WebPPictureImportRGB(&mut picture.0, rgb.as_ptr(), rgb.width() as i32 * 3)
        },
        other => unreachable!("pipeline images are RGB8 or RGBA8, not {:?}", other.color()),
    };
    if imported == 0 {
        return Err(fail("out of memory importing the picture"));
    }
    drop(image);

    // SAFETY: WebPMemoryWriterInit sets mem, size and max_size; `pad`, which it leaves alone,
    // is zeroed first, so every field is initialised before assume_init.
    let mut writer = Writer(unsafe {
        let mut writer = std::mem::MaybeUninit::zeroed();
        sys::WebPMemoryWriterInit(writer.as_mut_ptr());
        writer.assume_init()
    });
    picture.0.writer = Some(sys::WebPMemoryWrite);
    picture.0.custom_ptr = (&mut writer.0 as *mut sys::WebPMemoryWriter).cast();
    // SAFETY: config is validated and the picture imported above; libwebp's own writer,
    // WebPMemoryWrite, gets `custom_ptr` = &mut writer.0, a WebPMemoryWriter that stays in
    // place (it is not moved) and is not otherwise touched until WebPEncode returns.
    if unsafe { sys::WebPEncode(&config, &mut picture.0) } == 0 {
        let code = picture.0.error_code;
        return Err(encode_error(Format::Webp, format!("libwebp: {code:?}")));
    }
    // SAFETY: after a successful encode WebPMemoryWrite has appended the whole file (never
    // empty, so `mem` is non-null) and `mem` holds `size` initialised bytes; the slice is
    // used only while `writer`, whose drop frees them, is alive and unchanged.
    let memory = unsafe { std::slice::from_raw_parts(writer.0.mem, writer.0.size) };
    if request.icc.is_none() && request.exif.is_none() {
        return Ok(memory.to_vec());
    }
    let mut webp = WebP::from_bytes(Bytes::copy_from_slice(memory))
        .map_err(|e| encode_error(Format::Webp, e))?;
    webp.set_icc_profile(request.icc.map(Bytes::copy_from_slice));
    webp.set_exif(request.exif.map(Bytes::copy_from_slice));
    Ok(webp.encoder().bytes().to_vec())
}
