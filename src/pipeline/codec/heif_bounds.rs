//! What a HEIF (HEIC, AVIF) file may decode to: no more than its primary image's `ispe`
//! declares, the size the limits and the memory estimate judge (second hostile review of
//! 2026-12-03). [`check_tiling`] refuses a grid that says otherwise at the probe, whose
//! `Header` every decode needs; [`bound`] holds libheif itself to that size in every
//! decoding context, without parsing the file again.

use libheif_rs::HeifContext;

use super::heif::init;
use super::{decode_error, heif_grid};
use crate::error::Result;
use crate::spec::Format;

/// Per side, what a decoded picture may exceed its `ispe` by: the largest coding unit
/// (HEVC's CTU is 64, AV1's superblock 128), as libheif pads a coded item's own limit.
const CODING_SLACK: u64 = 128;

/// Refuses a primary image that would decode to more than its `ispe` declares, the size the
/// limits and the memory estimate are judged by (second hostile review of 2026-12-03): a
/// `grid` whose header asks for another output size (libheif allocates the grid header's
/// canvas and decodes every tile before it compares with `ispe`), or whose tiles do not
/// fit that output: a whole row or column of tiles outside it, or a tile larger than it.
/// Read through libheif's own tiling, before any pixel is decoded.
pub(super) fn check_tiling(bytes: &[u8], format: Format) -> Result<()> {
    use heif_grid::{release_handle, Owned};
    use libheif_sys as lh;
    let error = |e: lh::heif_error| {
        // SAFETY: libheif sets every error's message to a NUL-terminated string, static or
        // in the failed object's buffer; each error here comes straight from a call on
        // `ctx` or `handle`, both alive until this function returns, and is copied now.
        let message = unsafe { std::ffi::CStr::from_ptr(e.message) }.to_string_lossy();
        decode_error(format, format!("libheif error {}: {message}", e.code))
    };
    init();
    // SAFETY: no arguments; the new context (or null, checked below) is owned by `ctx`.
    let ctx = Owned(unsafe { lh::heif_context_alloc() }, lh::heif_context_free);
    if ctx.0.is_null() {
        return Err(decode_error(format, "libheif: no context"));
    }
    // SAFETY: a live context; `bytes` outlives it (ctx is dropped at the end of this
    // function) and libheif only reads them; null options are its defaults.
    let read = unsafe {
        lh::heif_context_read_from_memory_without_copy(
            ctx.0,
            bytes.as_ptr().cast(),
            bytes.len(),
            std::ptr::null(),
        )
    };
    if read.code != lh::heif_error_code_heif_error_Ok {
        return Err(error(read));
    }
    let mut handle = Owned(std::ptr::null_mut(), release_handle);
    // SAFETY: a live context; the new handle (or null on error) is owned by `handle`.
    let got = unsafe { lh::heif_context_get_primary_image_handle(ctx.0, &mut handle.0) };
    if got.code != lh::heif_error_code_heif_error_Ok {
        return Err(error(got));
    }
    // SAFETY: heif_image_tiling is plain integers, for which all zeroes is a value.
    let mut tiling: lh::heif_image_tiling = unsafe { std::mem::zeroed() };
    // SAFETY: a live handle and a tiling of the layout this libheif writes (the bindings
    // are those of the embedded version, feature v1_23); 0 = the coded sizes.
    let got = unsafe { lh::heif_image_handle_get_image_tiling(handle.0, 0, &mut tiling) };
    if got.code != lh::heif_error_code_heif_error_Ok {
        return Err(error(got));
    }
    // SAFETY: a live handle (negative values are read as 0 below).
    let ispe = unsafe {
        (
            lh::heif_image_handle_get_ispe_width(handle.0),
            lh::heif_image_handle_get_ispe_height(handle.0),
        )
    };
    let ispe = (ispe.0.max(0) as u32, ispe.1.max(0) as u32);
    let output = (tiling.image_width, tiling.image_height);
    if output != ispe {
        return Err(decode_error(
            format,
            format!(
                "the image's grid is {}x{} but its ispe says {}x{}",
                output.0, output.1, ispe.0, ispe.1
            ),
        ));
    }
    let fits = |tiles: u32, tile: u32, side: u32| {
        let (tiles, tile, side) = (u64::from(tiles), u64::from(tile), u64::from(side));
        tiles >= 1
            && tile * tiles >= side
            && tile * (tiles - 1) < side
            && tile <= side + CODING_SLACK
    };
    if !fits(tiling.num_columns, tiling.tile_width, output.0)
        || !fits(tiling.num_rows, tiling.tile_height, output.1)
    {
        return Err(decode_error(
            format,
            format!(
                "{}x{} tiles of {}x{} do not fit the image's {}x{}",
                tiling.num_columns,
                tiling.num_rows,
                tiling.tile_width,
                tiling.tile_height,
                output.0,
                output.1
            ),
        ));
    }
    Ok(())
}

/// Bytes a pixel libheif may hold in a decode: a 16-bit 4:4:4 picture with alpha (8 bytes
/// a pixel) and two images of its colour conversion beside it. Measured: 10 (the 8-bit
/// frames [`super::decode_cost`] counts) failed 10- and 12-bit 4:4:4 HEIC and AVIF from
/// heif-enc at 13 to 14 bytes a pixel of their `ispe`.
const LIBHEIF_PIXEL_BYTES: u64 = 24;

/// `ctx` made to refuse, inside libheif, any picture larger than its primary image's
/// `ispe` (padded by [`CODING_SLACK`]) and more memory than [`LIBHEIF_PIXEL_BYTES`] a
/// pixel of it (second hostile review of 2026-12-03): an alpha or other item that
/// [`check_tiling`] does not look at, or an overlay canvas, fails there instead of
/// allocating what no limit was checked for (libheif's default is 4 GB).
pub(super) fn bound(
    ctx: &mut HeifContext<'_>,
    handle: &libheif_rs::ImageHandle,
    format: Format,
) -> Result<()> {
    let side = |ispe: i32| u64::try_from(ispe).unwrap_or(0) + CODING_SLACK;
    let pixels = side(handle.ispe_width()) * side(handle.ispe_height());
    let mut limits = ctx.security_limits();
    limits.set_max_image_size_pixels(pixels);
    limits.set_max_total_memory(pixels * LIBHEIF_PIXEL_BYTES);
    ctx.set_security_limits(&limits)
        .map_err(|e| decode_error(format, e))
}
