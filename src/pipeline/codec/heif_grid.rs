//! Large HEIC outputs as a HEIF `grid` of equal tiles, the way phones write them: each
//! tile is its own x265 run, so the encoder holds one tile's state (a few MiB) instead
//! of a whole frame's (about 8× a 20 MP frame's YUV), and only one tile's pixels are copied.
//! libheif-rs does not wrap the incremental grid API, hence this small FFI module.

use std::ffi::{c_void, CStr, CString};
use std::ptr;

use image::DynamicImage;
use libheif_sys as lh;

use super::{encode_error, EncodeRequest};
use crate::error::Result;
use crate::spec::Format;

/// Largest tile side. Measured (x265 ultrafast, q50): on a 20 MP photo 1024 costs +0.4% bytes
/// and the same SSIMULACRA2 as one image, with a quarter of the peak memory (106 vs 409 MiB);
/// 512 (Apple's choice) costs +1% there and +16% on a 9 MP photo of smooth sky.
pub const TILE: u32 = 1024;

/// Whether `image` is written as a grid: an opaque HEIC of more than two tiles' area. AVIF
/// stays one image: libaom (speed 8) wrote 60% more bytes as a grid at the same score.
pub(super) fn wanted(image: &DynamicImage, format: Format) -> bool {
    let (w, h) = (u64::from(image.width()), u64::from(image.height()));
    let tile = u64::from(TILE);
    format == Format::Heic && !image.color().has_alpha() && w * h > 2 * tile * tile
}

/// Owns one libheif object; frees it on every path out.
struct Owned<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { (self.1)(self.0) }
        }
    }
}

unsafe extern "C" fn release_image(image: *mut lh::heif_image) {
    unsafe { lh::heif_image_release(image) }
}

unsafe extern "C" fn release_handle(handle: *mut lh::heif_image_handle) {
    unsafe { lh::heif_image_handle_release(handle) }
}

fn check(err: lh::heif_error) -> Result<()> {
    if err.code == lh::heif_error_code_heif_error_Ok {
        return Ok(());
    }
    // libheif's message is always a valid C string (possibly empty).
    let message = unsafe { CStr::from_ptr(err.message) }.to_string_lossy();
    Err(encode_error(
        Format::Heic,
        format!("libheif error {}: {message}", err.code),
    ))
}

/// Encodes an opaque RGB image as a grid of equal tiles of at most [`TILE`]² (edge tiles repeat
/// the last row and column; the grid's output size crops them away).
pub(super) fn encode(image: &DynamicImage, request: &EncodeRequest<'_>) -> Result<Vec<u8>> {
    let fail = |what: &str| encode_error(Format::Heic, what);
    let DynamicImage::ImageRgb8(rgb) = image else {
        return Err(fail("grid tiles are RGB"));
    };
    let (width, height) = rgb.dimensions();
    let (columns, rows) = (width.div_ceil(TILE), height.div_ceil(TILE));
    // Equal tiles as close to the image as possible (even sides for 4:2:0 chroma).
    let (tile_w, tile_h) = (
        width.div_ceil(columns).next_multiple_of(16),
        height.div_ceil(rows).next_multiple_of(16),
    );
    super::heif::init();

    let ctx = Owned(unsafe { lh::heif_context_alloc() }, lh::heif_context_free);
    if ctx.0.is_null() {
        return Err(fail("libheif: no context"));
    }
    let mut encoder = Owned(ptr::null_mut(), lh::heif_encoder_release);
    check(unsafe {
        lh::heif_context_get_encoder_for_format(
            ctx.0,
            lh::heif_compression_format_heif_compression_HEVC,
            &mut encoder.0,
        )
    })?;
    check(unsafe { lh::heif_encoder_set_lossy_quality(encoder.0, i32::from(request.quality)) })?;
    let preset = CString::new(request.heic_preset).map_err(|e| encode_error(Format::Heic, e))?;
    check(unsafe {
        lh::heif_encoder_set_parameter_string(encoder.0, c"preset".as_ptr(), preset.as_ptr())
    })?;

    let mut grid = Owned(ptr::null_mut(), release_handle);
    check(unsafe {
        lh::heif_context_add_grid_image(
            ctx.0,
            width,
            height,
            columns,
            rows,
            ptr::null(),
            &mut grid.0,
        )
    })?;
    let row_bytes = tile_w as usize * 3;
    for ty in 0..rows {
        for tx in 0..columns {
            let tile = Owned(new_tile(tile_w, tile_h)?, release_image);
            let mut stride = 0;
            let plane = unsafe {
                lh::heif_image_get_plane(
                    tile.0,
                    lh::heif_channel_heif_channel_interleaved,
                    &mut stride,
                )
            };
            if plane.is_null() {
                return Err(fail("libheif: tile without a plane"));
            }
            let stride = stride as usize;
            // Clamped: rounding tiles up may leave a last column or row wholly outside.
            let (x0, y0) = ((tx * tile_w).min(width - 1), ty * tile_h);
            let inside = (width - x0).min(tile_w) as usize * 3;
            for y in 0..tile_h {
                let src_y = (y0 + y).min(height - 1);
                let start = (src_y as usize * width as usize + x0 as usize) * 3;
                let src = &rgb.as_raw()[start..start + inside];
                // SAFETY: the plane has tile_h rows of `stride` ≥ tile_w × 3 bytes.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(plane.add(y as usize * stride), row_bytes)
                };
                dst[..inside].copy_from_slice(src);
                let last = [src[inside - 3], src[inside - 2], src[inside - 1]];
                for px in dst[inside..].chunks_exact_mut(3) {
                    px.copy_from_slice(&last);
                }
            }
            if let Some(icc) = request.icc {
                check(unsafe {
                    lh::heif_image_set_raw_color_profile(
                        tile.0,
                        c"prof".as_ptr(),
                        icc.as_ptr().cast(),
                        icc.len(),
                    )
                })?;
            }
            check(unsafe {
                lh::heif_context_add_image_tile(ctx.0, grid.0, tx, ty, tile.0, encoder.0)
            })?;
        }
    }
    if let Some(exif) = request.exif {
        let len = i32::try_from(exif.len()).map_err(|_| fail("EXIF too large"))?;
        check(unsafe {
            lh::heif_context_add_exif_metadata(ctx.0, grid.0, exif.as_ptr().cast(), len)
        })?;
    }
    let mut bytes = Vec::new();
    let mut writer = lh::heif_writer {
        writer_api_version: 1,
        write: Some(append),
    };
    check(unsafe {
        lh::heif_context_write(ctx.0, &mut writer, (&mut bytes as *mut Vec<u8>).cast())
    })?;
    Ok(bytes)
}

fn new_tile(width: u32, height: u32) -> Result<*mut lh::heif_image> {
    let mut image = ptr::null_mut();
    check(unsafe {
        lh::heif_image_create(
            width as i32,
            height as i32,
            lh::heif_colorspace_heif_colorspace_RGB,
            lh::heif_chroma_heif_chroma_interleaved_RGB,
            &mut image,
        )
    })?;
    let added = unsafe {
        lh::heif_image_add_plane(
            image,
            lh::heif_channel_heif_channel_interleaved,
            width as i32,
            height as i32,
            8,
        )
    };
    if let Err(e) = check(added) {
        unsafe { lh::heif_image_release(image) };
        return Err(e);
    }
    Ok(image)
}

/// heif_writer callback: appends to the `Vec<u8>` behind `userdata`.
unsafe extern "C" fn append(
    _ctx: *mut lh::heif_context,
    data: *const c_void,
    size: usize,
    userdata: *mut c_void,
) -> lh::heif_error {
    // SAFETY: `userdata` is the &mut Vec<u8> passed to heif_context_write above.
    let bytes = unsafe { &mut *userdata.cast::<Vec<u8>>() };
    bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) });
    lh::heif_error {
        code: lh::heif_error_code_heif_error_Ok,
        subcode: lh::heif_suberror_code_heif_suberror_Unspecified,
        message: c"".as_ptr(),
    }
}
