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

/// Owns one libheif object; frees it on every path out. Invariant: the pointer is null or an
/// object libheif made that nothing else frees, and the function is the one releasing it.
struct Owned<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: by the invariant, a live object that this Owned alone releases, with
            // its own release function; drop runs once and the pointer is not used after.
            unsafe { (self.1)(self.0) }
        }
    }
}

/// # Safety
/// `image` is a live heif_image that the caller owns and does not use after this call.
unsafe extern "C" fn release_image(image: *mut lh::heif_image) {
    // SAFETY: the caller's contract above (Owned::drop: a non-null image it alone owns).
    unsafe { lh::heif_image_release(image) }
}

/// # Safety
/// `handle` is a live heif_image_handle that the caller owns and does not use after this call.
unsafe extern "C" fn release_handle(handle: *mut lh::heif_image_handle) {
    // SAFETY: the caller's contract above (Owned::drop: a non-null handle it alone owns).
    unsafe { lh::heif_image_handle_release(handle) }
}

fn check(err: lh::heif_error) -> Result<()> {
    if err.code == lh::heif_error_code_heif_error_Ok {
        return Ok(());
    }
    // SAFETY: libheif sets every error's `message` to a NUL-terminated string, static or in
    // the error buffer of the object that failed (Error::error_struct); callers pass errors
    // straight from the call, while that object is alive, and the text is copied here.
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

    // SAFETY: no arguments; the new context (or null, checked below) is owned by `ctx` alone.
    let ctx = Owned(unsafe { lh::heif_context_alloc() }, lh::heif_context_free);
    if ctx.0.is_null() {
        return Err(fail("libheif: no context"));
    }
    let mut encoder = Owned(ptr::null_mut(), lh::heif_encoder_release);
    // SAFETY: `ctx` is a live context; libheif stores a new encoder, owned by `encoder`, in
    // the out-pointer, or leaves it null and returns an error.
    check(unsafe {
        lh::heif_context_get_encoder_for_format(
            ctx.0,
            lh::heif_compression_format_heif_compression_HEVC,
            &mut encoder.0,
        )
    })?;
    let quality = super::heif::encoder_quality(request);
    // SAFETY: the call above succeeded, so `encoder` holds a live encoder.
    check(unsafe { lh::heif_encoder_set_lossy_quality(encoder.0, i32::from(quality)) })?;
    let preset = CString::new(request.heic_preset).map_err(|e| encode_error(Format::Heic, e))?;
    // SAFETY: a live encoder and two NUL-terminated strings that outlive the call (libheif
    // copies the value).
    check(unsafe {
        lh::heif_encoder_set_parameter_string(encoder.0, c"preset".as_ptr(), preset.as_ptr())
    })?;
    for (name, value) in super::heif::X265_TUNING {
        let (name, value) = (
            CString::new(name).map_err(|e| encode_error(Format::Heic, e))?,
            CString::new(value).map_err(|e| encode_error(Format::Heic, e))?,
        );
        // SAFETY: as for the preset: a live encoder, NUL-terminated strings libheif copies.
        check(unsafe {
            lh::heif_encoder_set_parameter_string(encoder.0, name.as_ptr(), value.as_ptr())
        })?;
    }

    let mut grid = Owned(ptr::null_mut(), release_handle);
    // SAFETY: a live context; null options mean libheif's defaults; the new grid handle (or
    // null on error) goes to the out-pointer, owned by `grid`.
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
            // SAFETY: `tile` is a live image that new_tile gave an interleaved plane; libheif
            // returns that plane (or null, checked below) and writes its stride.
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
                // SAFETY: the plane was added as tile_w × tile_h 8-bit interleaved RGB, so it has
                // tile_h rows (y < tile_h) of `stride` ≥ tile_w × 3 = row_bytes bytes; nothing
                // else reads or writes it while `dst` lives.
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
                // SAFETY: a live image; the type is a NUL-terminated string and `icc` is valid
                // for icc.len() bytes during the call (libheif copies the profile).
                check(unsafe {
                    lh::heif_image_set_raw_color_profile(
                        tile.0,
                        c"prof".as_ptr(),
                        icc.as_ptr().cast(),
                        icc.len(),
                    )
                })?;
            }
            // SAFETY: live context, grid handle (made by this context), tile image and
            // encoder; tx < columns and ty < rows of the grid. libheif encodes the tile during
            // the call and keeps nothing that `tile`'s release frees (pixels are refcounted).
            check(unsafe {
                lh::heif_context_add_image_tile(ctx.0, grid.0, tx, ty, tile.0, encoder.0)
            })?;
        }
    }
    if let Some(exif) = request.exif {
        let len = i32::try_from(exif.len()).map_err(|_| fail("EXIF too large"))?;
        // SAFETY: live context and grid handle; `exif` is valid for `len` bytes during the
        // call (libheif copies them).
        check(unsafe {
            lh::heif_context_add_exif_metadata(ctx.0, grid.0, exif.as_ptr().cast(), len)
        })?;
    }
    let mut bytes = Vec::new();
    let mut writer = lh::heif_writer {
        writer_api_version: 1,
        write: Some(append),
    };
    // SAFETY: a live context; `writer` and `bytes` outlive the call and nothing else touches
    // `bytes` during it, so `append` may take the userdata as its `&mut Vec<u8>`.
    check(unsafe {
        lh::heif_context_write(ctx.0, &mut writer, (&mut bytes as *mut Vec<u8>).cast())
    })?;
    Ok(bytes)
}

fn new_tile(width: u32, height: u32) -> Result<*mut lh::heif_image> {
    let mut image = ptr::null_mut();
    // SAFETY: plain values (tile sides ≤ TILE + 15, so the casts are exact) and an
    // out-pointer, which gets a new image owned here, or stays null on error.
    check(unsafe {
        lh::heif_image_create(
            width as i32,
            height as i32,
            lh::heif_colorspace_heif_colorspace_RGB,
            lh::heif_chroma_heif_chroma_interleaved_RGB,
            &mut image,
        )
    })?;
    // SAFETY: `image` is the live image just created, of these sides.
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
        // SAFETY: the image is ours alone (not yet returned) and is not used after this.
        unsafe { lh::heif_image_release(image) };
        return Err(e);
    }
    Ok(image)
}

/// heif_writer callback: appends to the `Vec<u8>` behind `userdata`.
///
/// # Safety
/// `userdata` is a `*mut Vec<u8>` that nothing else uses during the call, and `data` is
/// readable for `size` bytes (heif_context_write, with `encode`'s arguments, guarantees both).
unsafe extern "C" fn append(
    _ctx: *mut lh::heif_context,
    data: *const c_void,
    size: usize,
    userdata: *mut c_void,
) -> lh::heif_error {
    // SAFETY: the contract above: an exclusive, live Vec<u8>.
    let bytes = unsafe { &mut *userdata.cast::<Vec<u8>>() };
    if size > 0 {
        // SAFETY: the contract above: `size` readable bytes at `data`, non-null as size > 0.
        bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) });
    }
    lh::heif_error {
        code: lh::heif_error_code_heif_error_Ok,
        subcode: lh::heif_suberror_code_heif_suberror_Unspecified,
        message: c"".as_ptr(),
    }
}
