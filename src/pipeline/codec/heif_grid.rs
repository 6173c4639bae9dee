//! Large HEIC outputs as a HEIF `grid` of equal tiles, the way phones write them: each
//! tile is its own x265 run, so an encoder holds one tile's state (a few MiB) instead
//! of a whole frame's (about 8× a 20 MP frame's YUV), and only the tiles in flight are
//! copied. Tiles are encoded on several threads at once ([`tile_workers`]). libheif-rs
//! does not wrap the grid API, hence this FFI module.

use std::ffi::{c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use image::{DynamicImage, RgbImage};
use libheif_sys as lh;

use super::heif_replay::Bitstream;
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
pub(super) struct Owned<T>(pub *mut T, pub unsafe extern "C" fn(*mut T));

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
pub(super) unsafe extern "C" fn release_handle(handle: *mut lh::heif_image_handle) {
    // SAFETY: the caller's contract above (Owned::drop: a non-null handle it alone owns).
    unsafe { lh::heif_image_handle_release(handle) }
}

pub(super) fn check(err: lh::heif_error) -> Result<()> {
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

/// How an image is cut: `columns` × `rows` equal tiles of `tile` sides, at most [`TILE`]²,
/// as close to the image as possible (even sides for 4:2:0 chroma); edge tiles repeat the
/// last row and column, and the grid's output size crops them away.
struct Layout {
    size: (u32, u32),
    columns: u32,
    rows: u32,
    tile: (u32, u32),
}

impl Layout {
    fn of((width, height): (u32, u32)) -> Layout {
        let (columns, rows) = (width.div_ceil(TILE), height.div_ceil(TILE));
        Layout {
            size: (width, height),
            columns,
            rows,
            tile: (
                width.div_ceil(columns).next_multiple_of(16),
                height.div_ceil(rows).next_multiple_of(16),
            ),
        }
    }

    fn tiles(&self) -> u32 {
        self.columns * self.rows
    }

    /// Tile `index` (row by row) of `rgb` as a new libheif image.
    fn tile(&self, rgb: &RgbImage, index: u32) -> Result<Owned<lh::heif_image>> {
        let fail = |what: &str| encode_error(Format::Heic, what);
        let ((width, height), (tile_w, tile_h)) = (self.size, self.tile);
        let (tx, ty) = (index % self.columns, index / self.columns);
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
        let (stride, row_bytes) = (stride as usize, tile_w as usize * 3);
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
        Ok(tile)
    }
}

/// Tiles encoded at once: each x265 run keeps about 1.5 cores busy on its own (wavefronts
/// within a 1024 px tile), so two or more runs side by side fill the machine.
pub const PARALLEL_TILES: usize = 4;

/// What each tile encoded beside the first adds to a conversion's peak memory: its x265
/// state, its RGB and YCbCr copies, its coded picture. Measured +17 MiB peak RSS for the
/// second of two (`imgfs convert` of the 20 MP photo to HEIC, `/usr/bin/time -f %M`).
pub const TILE_RUN_BYTES: u64 = 24 << 20;

/// How many tiles of an image of `tiles` are encoded at once on this machine.
pub fn tile_workers(tiles: u32) -> usize {
    // Asked once: std reads the cgroup's CPU quota from /sys on every call, and the memory
    // estimate of every HEIC conversion asks.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    cores.min(PARALLEL_TILES).min(tiles as usize).max(1)
}

/// Encodes an opaque RGB image as a grid of equal tiles (see [`Layout`]): the tiles are
/// encoded in parallel, each by x265 in a context of its own, then written into one grid
/// by libheif through the replay encoder (`heif_replay`), so the file is the one libheif
/// writes when it encodes the tiles itself, one after another.
pub(super) fn encode(image: &DynamicImage, request: &EncodeRequest<'_>) -> Result<Vec<u8>> {
    let DynamicImage::ImageRgb8(rgb) = image else {
        return Err(encode_error(Format::Heic, "grid tiles are RGB"));
    };
    let layout = Layout::of(rgb.dimensions());
    super::heif::init();
    let workers = tile_workers(layout.tiles());
    if workers == 1 {
        // One tile at a time: x265 encodes them in place, with nothing to replay.
        let x265 = x265_encoder(request)?;
        return assemble(Pixels::Of(rgb), &layout, request, x265.0);
    }
    let pictures = encode_tiles(rgb, &layout, request, workers)?;
    super::heif_replay::replaying(pictures, |replay| {
        assemble(Pixels::Blank, &layout, request, replay)
    })
}

/// Every tile's x265 picture, in grid order, encoded on `workers` threads.
fn encode_tiles(
    rgb: &RgbImage,
    layout: &Layout,
    request: &EncodeRequest<'_>,
    workers: usize,
) -> Result<Vec<Bitstream>> {
    let count = layout.tiles();
    let next = AtomicU32::new(0);
    let done: Mutex<Vec<Option<Result<Bitstream>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let picture = encode_alone(rgb, layout, index, request);
                if picture.is_err() {
                    next.store(count, Ordering::Relaxed); // the others stop early
                }
                done.lock().unwrap_or_else(|e| e.into_inner())[index as usize] = Some(picture);
            });
        }
    });
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    // The first failure in grid order, as a serial encode would meet it.
    done.into_iter()
        .map(|picture| {
            picture.unwrap_or_else(|| Err(encode_error(Format::Heic, "a tile was not encoded")))
        })
        .collect()
}

/// Tile `index` encoded by x265 as a one-image HEIC, and its picture taken out of that file.
fn encode_alone(
    rgb: &RgbImage,
    layout: &Layout,
    index: u32,
    request: &EncodeRequest<'_>,
) -> Result<Bitstream> {
    let tile = layout.tile(rgb, index)?;
    let ctx = new_context()?;
    let encoder = x265_encoder(request)?;
    let mut handle = Owned(ptr::null_mut(), release_handle);
    // SAFETY: live context, tile image and encoder; null options mean libheif's defaults
    // (those of the grid's tiles too); the new handle (or null) is owned by `handle`.
    check(unsafe {
        lh::heif_context_encode_image(ctx.0, tile.0, encoder.0, ptr::null(), &mut handle.0)
    })?;
    drop(tile);
    Bitstream::of_file(&write(&ctx)?, layout.tile)
}

fn new_context() -> Result<Owned<lh::heif_context>> {
    // SAFETY: no arguments; the new context (or null, checked below) is owned by `ctx` alone.
    let ctx = Owned(unsafe { lh::heif_context_alloc() }, lh::heif_context_free);
    if ctx.0.is_null() {
        return Err(encode_error(Format::Heic, "libheif: no context"));
    }
    Ok(ctx)
}

/// libheif's x265 encoder with imgfs's quality, preset and tuning.
fn x265_encoder(request: &EncodeRequest<'_>) -> Result<Owned<lh::heif_encoder>> {
    let mut encoder = Owned(ptr::null_mut(), lh::heif_encoder_release);
    // SAFETY: a null context is allowed (libheif documents it); libheif stores a new
    // encoder, owned by `encoder`, in the out-pointer, or leaves it null and returns an error.
    check(unsafe {
        lh::heif_context_get_encoder_for_format(
            ptr::null_mut(),
            lh::heif_compression_format_heif_compression_HEVC,
            &mut encoder.0,
        )
    })?;
    let quality = super::heif::encoder_quality(request);
    // SAFETY: the call above succeeded, so `encoder` holds a live encoder.
    check(unsafe { lh::heif_encoder_set_lossy_quality(encoder.0, i32::from(quality)) })?;
    for (name, value) in super::heif::x265_parameters(request.heic_preset) {
        let (name, value) = (
            CString::new(name).map_err(|e| encode_error(Format::Heic, e))?,
            CString::new(value).map_err(|e| encode_error(Format::Heic, e))?,
        );
        // SAFETY: a live encoder and two NUL-terminated strings that outlive the call
        // (libheif copies the value).
        check(unsafe {
            lh::heif_encoder_set_parameter_string(encoder.0, name.as_ptr(), value.as_ptr())
        })?;
    }
    Ok(encoder)
}

/// What the tile images handed to [`assemble`]'s encoder hold.
#[derive(Clone, Copy)]
enum Pixels<'a> {
    /// The image's own tiles, in RGB: x265 encodes them (on one core, and in the tests as
    /// the reference the parallel encode must equal).
    Of(&'a RgbImage),
    /// One blank tile in the encoder's own colorspace (YCbCr 4:2:0) at every position: the
    /// replay encoder ignores pixels, and libheif converts an RGB tile before handing it
    /// over, which cost 0.1 s of a 20 MP grid encode (up to 6% of the wall time on smaller
    /// ones), alone on one core at the end.
    Blank,
}

/// Writes the grid file: `encoder` encodes each tile in grid order (the replay encoder with
/// blank tiles, or x265 itself with the image's tiles: on one core, and in the tests that
/// check that the two give the same file).
fn assemble(
    pixels: Pixels<'_>,
    layout: &Layout,
    request: &EncodeRequest<'_>,
    encoder: *mut lh::heif_encoder,
) -> Result<Vec<u8>> {
    let ctx = new_context()?;
    let mut grid = Owned(ptr::null_mut(), release_handle);
    // SAFETY: a live context; null options mean libheif's defaults; the new grid handle (or
    // null on error) goes to the out-pointer, owned by `grid`.
    check(unsafe {
        lh::heif_context_add_grid_image(
            ctx.0,
            layout.size.0,
            layout.size.1,
            layout.columns,
            layout.rows,
            ptr::null(),
            &mut grid.0,
        )
    })?;
    let blank = match pixels {
        Pixels::Blank => Some(with_icc(blank_tile(layout.tile)?, request.icc)?),
        Pixels::Of(_) => None,
    };
    for index in 0..layout.tiles() {
        let own = match pixels {
            Pixels::Of(rgb) => Some(with_icc(layout.tile(rgb, index)?, request.icc)?),
            Pixels::Blank => None,
        };
        let tile = own
            .as_ref()
            .or(blank.as_ref())
            .expect("a tile of one kind or the other");
        let (tx, ty) = (index % layout.columns, index / layout.columns);
        // SAFETY: live context, grid handle (made by this context), tile image and encoder
        // (the caller's); tx < columns and ty < rows of the grid. libheif encodes the tile
        // during the call and keeps nothing that `tile`'s release frees (pixels are
        // refcounted), nor changes the image, so one blank image serves every position.
        check(unsafe { lh::heif_context_add_image_tile(ctx.0, grid.0, tx, ty, tile.0, encoder) })?;
    }
    if let Some(exif) = request.exif {
        let len =
            i32::try_from(exif.len()).map_err(|_| encode_error(Format::Heic, "EXIF too large"))?;
        // SAFETY: live context and grid handle; `exif` is valid for `len` bytes during the
        // call (libheif copies them).
        check(unsafe {
            lh::heif_context_add_exif_metadata(ctx.0, grid.0, exif.as_ptr().cast(), len)
        })?;
    }
    write(&ctx)
}

/// The file `ctx` holds, as bytes.
fn write(ctx: &Owned<lh::heif_context>) -> Result<Vec<u8>> {
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

/// `tile` with the output's ICC profile, if it has one (libheif writes it as the tile's `colr`).
fn with_icc(tile: Owned<lh::heif_image>, icc: Option<&[u8]>) -> Result<Owned<lh::heif_image>> {
    if let Some(icc) = icc {
        // SAFETY: a live image; the type is a NUL-terminated string and `icc` is valid for
        // icc.len() bytes during the call (libheif copies the profile).
        check(unsafe {
            lh::heif_image_set_raw_color_profile(
                tile.0,
                c"prof".as_ptr(),
                icc.as_ptr().cast(),
                icc.len(),
            )
        })?;
    }
    Ok(tile)
}

/// A black 8-bit YCbCr 4:2:0 image of a tile's sides (even: multiples of 16), which libheif
/// hands to an HEVC encoder as it is.
fn blank_tile((width, height): (u32, u32)) -> Result<Owned<lh::heif_image>> {
    let mut image = Owned(ptr::null_mut(), release_image);
    // SAFETY: plain values (tile sides ≤ TILE + 15, so the casts are exact) and an
    // out-pointer, which gets a new image owned by `image`, or stays null on error.
    check(unsafe {
        lh::heif_image_create(
            width as i32,
            height as i32,
            lh::heif_colorspace_heif_colorspace_YCbCr,
            lh::heif_chroma_heif_chroma_420,
            &mut image.0,
        )
    })?;
    let planes = [
        (lh::heif_channel_heif_channel_Y, width, height, 0),
        (lh::heif_channel_heif_channel_Cb, width / 2, height / 2, 128),
        (lh::heif_channel_heif_channel_Cr, width / 2, height / 2, 128),
    ];
    for (channel, plane_w, plane_h, value) in planes {
        // SAFETY: the live image just created; plane sides fit an i32 as the tile's do.
        check(unsafe {
            lh::heif_image_add_plane(image.0, channel, plane_w as i32, plane_h as i32, 8)
        })?;
        let mut stride = 0;
        // SAFETY: the plane just added (or null, checked below); libheif writes its stride.
        let plane = unsafe { lh::heif_image_get_plane(image.0, channel, &mut stride) };
        if plane.is_null() {
            return Err(encode_error(
                Format::Heic,
                "libheif: blank tile without a plane",
            ));
        }
        // SAFETY: an 8-bit plane of plane_h rows of `stride` bytes, which libheif allocated
        // and nothing else touches yet.
        unsafe { ptr::write_bytes(plane, value, stride as usize * plane_h as usize) };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Smooth gradients with some texture, so that x265 has something to code.
    fn photo_like(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let texture = ((x * 7 + y * 13) % 17) as u8;
            image::Rgb([(x / 9) as u8 ^ texture, (y / 6) as u8, ((x + y) / 13) as u8])
        })
    }

    fn heic_50<'a>(icc: Option<&'a [u8]>, exif: Option<&'a [u8]>) -> EncodeRequest<'a> {
        EncodeRequest {
            format: Format::Heic,
            quality: 50,
            progressive: false,
            heic_preset: "ultrafast",
            icc,
            exif,
        }
    }

    /// A real grid HEIC of `layout` whose tiles are all one black picture (encoded once and
    /// replayed at every position, so a 30000² grid takes a second), its grid's `ispe`
    /// patched to `ispe`: what a hostile file may declare to the probe.
    fn grid_file(layout: &Layout, ispe: (u32, u32)) -> Vec<u8> {
        let request = heic_50(None, None);
        let tile = RgbImage::new(layout.tile.0, layout.tile.1);
        let picture = encode_alone(&tile, &Layout::of(layout.tile), 0, &request).unwrap();
        let pictures = vec![picture; layout.tiles() as usize];
        let mut bytes = super::super::heif_replay::replaying(pictures, |replay| {
            assemble(Pixels::Blank, layout, &request, replay)
        })
        .unwrap();
        // The grid item's `ispe` (a full box: version and flags, then the sides); the
        // tiles' own `ispe` holds the tile's sides.
        let mut declared = b"ispe\0\0\0\0".to_vec();
        declared.extend(layout.size.0.to_be_bytes());
        declared.extend(layout.size.1.to_be_bytes());
        let at = bytes
            .windows(declared.len())
            .position(|w| w == declared)
            .expect("the grid's ispe box");
        bytes[at + 8..at + 12].copy_from_slice(&ispe.0.to_be_bytes());
        bytes[at + 12..at + 16].copy_from_slice(&ispe.1.to_be_bytes());
        bytes
    }

    /// The errno a conversion of `bytes` to JPEG fails with.
    fn conversion_errno(bytes: &[u8]) -> i32 {
        let spec = crate::spec::Spec::parse("format,jpeg", &Default::default()).unwrap();
        let settings = crate::pipeline::Settings::default();
        let marks = crate::pipeline::Marks::default();
        let err = crate::pipeline::convert(bytes, &marks, &spec, &settings).unwrap_err();
        err.errno()
    }

    /// Second hostile review of 2026-12-03: the probe read a HEIC's size from its primary
    /// image's `ispe` alone, so a grid declaring 64×64 there but 30000×30000 in its grid
    /// header (900 tiles of 1008²) passed the source limits and was admitted for a 64×64
    /// estimate; libheif then allocated the 30000² canvas and decoded every tile before it
    /// compared the sizes (1.35 GB peak RSS and 3.7 s for `imgfs convert` of this 0.35 MB
    /// file; 14 MB and 0.01 s now). Now the probe refuses it (EIO) from libheif's tiling,
    /// before any estimate or decode, and libheif itself refuses the canvas on a decode
    /// that skips the probe.
    #[test]
    fn a_grid_larger_than_its_ispe_is_refused_before_its_decode() {
        let bytes = grid_file(&Layout::of((30000, 30000)), (64, 64));
        let err = super::super::probe(&bytes).unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err}");
        assert!(
            err.to_string()
                .contains("30000x30000 but its ispe says 64x64"),
            "{err}"
        );
        assert_eq!(conversion_errno(&bytes), libc::EIO);

        // libheif's own limits, set from the `ispe` on every decoding context, refuse the
        // canvas before any tile is decoded, whatever the probe said.
        let mut ctx = libheif_rs::HeifContext::read_from_bytes(&bytes).unwrap();
        let handle = ctx.primary_image_handle().unwrap();
        assert_eq!((handle.width(), handle.height()), (64, 64));
        super::super::heif_bounds::bound(&mut ctx, &handle, Format::Heic).unwrap();
        let rgb = libheif_rs::ColorSpace::Rgb(libheif_rs::RgbChroma::Rgb);
        let started = std::time::Instant::now();
        let err = libheif_rs::LibHeif::new()
            .decode(&handle, rgb, None)
            .err()
            .expect("a decode past the limits");
        let limit = matches!(
            err.sub_code,
            libheif_rs::HeifErrorSubCode::SecurityLimitExceeded
        );
        assert!(limit && err.message.contains("30000x30000"), "{err:?}");
        // 900 tile decodes take seconds: none was started.
        assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());
    }

    /// Second hostile review of 2026-12-03: tiles beyond a grid's output were decoded, each
    /// in full, for nothing: rows and columns of tiles wholly outside it (400 tiles for a
    /// 64×64 picture), or one tile larger than it. Both are EIO at the probe; a grid whose
    /// sizes agree, its last tiles partly outside, converts as before.
    #[test]
    fn grid_tiles_outside_the_picture_are_refused_at_the_probe() {
        let many = Layout {
            size: (64, 64),
            columns: 20,
            rows: 20,
            tile: (512, 512),
        };
        let large = Layout {
            size: (64, 64),
            columns: 1,
            rows: 1,
            tile: (1024, 1024),
        };
        for layout in [many, large] {
            let bytes = grid_file(&layout, (64, 64));
            let err = super::super::probe(&bytes).unwrap_err();
            assert_eq!(err.errno(), libc::EIO, "{err}");
            assert!(
                err.to_string().contains("do not fit the image's 64x64"),
                "{err}"
            );
            assert_eq!(conversion_errno(&bytes), libc::EIO);
        }
        let fair = Layout::of((2100, 1300));
        let bytes = grid_file(&fair, fair.size);
        let header = super::super::probe(&bytes).unwrap();
        assert_eq!((header.width, header.height), (2100, 1300));
        let decoded = super::super::decode(&bytes, &header, Default::default()).unwrap();
        assert_eq!(
            (decoded.image.width(), decoded.image.height()),
            (2100, 1300)
        );
    }

    #[test]
    fn tiles_encoded_in_parallel_make_the_file_a_serial_encode_makes() {
        // 3 × 2 tiles, the last column and row only partly inside the image.
        let rgb = photo_like(2100, 1300);
        let layout = Layout::of(rgb.dimensions());
        assert_eq!((layout.columns, layout.rows), (3, 2));
        super::super::heif::init();
        // With an ICC profile (a `colr` box per tile) and without (none): the blank tiles
        // of the replay carry the profile, and nothing else of theirs reaches the file.
        let icc: &[u8] = b"not checked by libheif: stored as given";
        for icc in [Some(icc), None] {
            let request = heic_50(icc, Some(b"MM\0*\0\0\0\x08\0\0"));
            let serial = {
                let x265 = x265_encoder(&request).unwrap();
                assemble(Pixels::Of(&rgb), &layout, &request, x265.0).unwrap()
            };
            for workers in [1, 3] {
                let pictures = encode_tiles(&rgb, &layout, &request, workers).unwrap();
                let parallel = super::super::heif_replay::replaying(pictures, |replay| {
                    assemble(Pixels::Blank, &layout, &request, replay)
                })
                .unwrap();
                assert!(
                    parallel == serial,
                    "{workers} workers, ICC {icc:?}: another file"
                );
            }
            let through_encode = encode(&DynamicImage::ImageRgb8(rgb.clone()), &request).unwrap();
            assert!(through_encode == serial);
            let ctx = libheif_rs::HeifContext::read_from_bytes(&serial).unwrap();
            let primary = ctx.primary_image_handle().unwrap();
            assert_eq!((primary.width(), primary.height()), (2100, 1300));
            let profile = primary.color_profile_raw().map(|p| p.data);
            assert_eq!(profile.as_deref(), icc);
        }
    }

    #[test]
    fn a_replay_with_pictures_left_over_or_missing_fails() {
        let rgb = photo_like(1100, 600);
        let request = heic_50(None, None);
        let layout = Layout::of(rgb.dimensions());
        let mut pictures = encode_tiles(&rgb, &layout, &request, 2).unwrap();
        let replay = |pictures| {
            super::super::heif_replay::replaying(pictures, |replay| {
                assemble(Pixels::Blank, &layout, &request, replay)
            })
        };
        assert!(replay(pictures.clone()).is_ok());
        pictures.push(pictures[0].clone());
        let err = replay(pictures.clone()).unwrap_err().to_string();
        assert!(err.contains("not used"), "{err}");
        pictures.truncate(1);
        let err = replay(pictures).unwrap_err().to_string();
        assert!(err.contains("more pictures"), "{err}");
    }
}
