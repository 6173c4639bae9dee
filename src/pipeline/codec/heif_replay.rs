//! A libheif encoder plugin that encodes nothing: it hands libheif HEVC bitstreams made
//! beforehand, one per `encode_image` call, in order. The grid writer encodes its tiles in
//! parallel, each with x265 in a context of its own, then builds the one grid file by
//! "encoding" the tiles again through this plugin, so libheif still writes every box (grid,
//! hvcC, ispe, pixi, colr, EXIF) exactly as when it encodes the tiles itself, one by one.
//!
//! The bitstreams travel through a thread-local queue: libheif calls a plugin on the thread
//! that asked it to encode, so [`replaying`] fills the queue, runs its closure and empties
//! the queue again on the same thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use libheif_sys as lh;

use super::encode_error;
use crate::error::Result;
use crate::spec::Format;

/// One coded picture as the x265 plugin gave it to libheif: NAL units without start codes,
/// parameter sets first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Bitstream {
    pub nals: Vec<Vec<u8>>,
    /// The picture's sides, as the tile image handed to libheif must have them.
    pub size: (u32, u32),
}

impl Bitstream {
    /// The picture of a single-image HEIC file that libheif wrote: the parameter sets from
    /// its `hvcC` box, then the item's length-prefixed NAL units.
    pub fn of_file(file: &[u8], size: (u32, u32)) -> Result<Bitstream> {
        let fail = |what: &str| encode_error(Format::Heic, format!("tile bitstream: {what}"));
        let meta = child(file, b"meta").ok_or_else(|| fail("no meta box"))?;
        let hvcc = meta
            .get(4..) // a full box: version and flags first
            .and_then(|meta| child(meta, b"iprp"))
            .and_then(|iprp| child(iprp, b"ipco"))
            .and_then(|ipco| child(ipco, b"hvcC"))
            .ok_or_else(|| fail("no hvcC box"))?;
        let mut nals = parameter_sets(hvcc).ok_or_else(|| fail("a damaged hvcC box"))?;
        let data = item_data(file)?;
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_at_checked(4)
                .ok_or_else(|| fail("a cut NAL length"))?;
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            let (nal, tail) = tail
                .split_at_checked(len)
                .ok_or_else(|| fail("a cut NAL"))?;
            nals.push(nal.to_vec());
            rest = tail;
        }
        Ok(Bitstream { nals, size })
    }
}

/// The payload of the first box of type `kind` among the boxes that make up `data`.
fn child<'a>(mut data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().ok()?) as usize;
        let (header, size) = match size {
            0 => (8, data.len()),
            1 => (
                16,
                usize::try_from(u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)).ok()?,
            ),
            n => (8, n),
        };
        let payload = data.get(header..size)?;
        if &data[4..8] == kind {
            return Some(payload);
        }
        data = &data[size..];
    }
    None
}

/// The NAL units of an `hvcC` payload's arrays, in order (ISO/IEC 14496-15, 8.3.3).
fn parameter_sets(hvcc: &[u8]) -> Option<Vec<Vec<u8>>> {
    let arrays = *hvcc.get(22)?;
    let mut at = 23;
    let mut nals = vec![];
    let u16_at = |at: usize| Some(u16::from_be_bytes(hvcc.get(at..at + 2)?.try_into().ok()?));
    for _ in 0..arrays {
        let count = u16_at(at + 1)?;
        at += 3;
        for _ in 0..count {
            let len = usize::from(u16_at(at)?);
            nals.push(hvcc.get(at + 2..at + 2 + len)?.to_vec());
            at += 2 + len;
        }
    }
    Some(nals)
}

/// The coded data of the primary item of the HEIF file `file`, as libheif reads it.
fn item_data(file: &[u8]) -> Result<Vec<u8>> {
    use super::heif_grid::{check, Owned};
    let fail = |what: &str| encode_error(Format::Heic, format!("tile bitstream: {what}"));
    // SAFETY: no arguments; the new context (or null, checked below) is owned by `ctx` alone.
    let ctx = Owned(unsafe { lh::heif_context_alloc() }, lh::heif_context_free);
    if ctx.0.is_null() {
        return Err(fail("no context"));
    }
    // SAFETY: a live context; `file` outlives `ctx` (dropped at the end of this function,
    // before `file`'s borrow ends), as reading without a copy requires.
    check(unsafe {
        lh::heif_context_read_from_memory_without_copy(
            ctx.0,
            file.as_ptr().cast(),
            file.len(),
            ptr::null(),
        )
    })?;
    let mut id = 0;
    // SAFETY: a live context that has read a file; `id` is written on success.
    check(unsafe { lh::heif_context_get_primary_image_ID(ctx.0, &mut id) })?;
    let (mut data, mut len) = (ptr::null_mut(), 0);
    // SAFETY: a live context and an item of it; a null compression out-pointer asks for
    // the stored bytes; libheif allocates `data` (freed below with its own function).
    check(unsafe { lh::heif_item_get_item_data(ctx.0, id, ptr::null_mut(), &mut data, &mut len) })?;
    if data.is_null() {
        return Err(fail("an empty item"));
    }
    // SAFETY: libheif returned `len` readable bytes at `data`, alive until released below.
    let bytes = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
    // SAFETY: `data` came from heif_item_get_item_data on this context and is not used after.
    unsafe { lh::heif_release_item_data(ctx.0, &mut data) };
    Ok(bytes)
}

thread_local! {
    /// The bitstreams this thread's replay encoders hand out next.
    static QUEUE: RefCell<VecDeque<Bitstream>> = const { RefCell::new(VecDeque::new()) };
}

/// Runs `f` with a libheif encoder that answers its n-th `encode_image` call on this thread
/// with `pictures[n]`. Every picture must be used: one left over is an error.
pub(super) fn replaying<R>(
    pictures: Vec<Bitstream>,
    f: impl FnOnce(*mut lh::heif_encoder) -> Result<R>,
) -> Result<R> {
    use super::heif_grid::{check, Owned};
    let fail = |what: &str| encode_error(Format::Heic, format!("replay: {what}"));
    super::heif::init(); // registers the replay encoder
    let mut descriptor = ptr::null();
    // SAFETY: the id is a NUL-terminated string; libheif writes at most one descriptor
    // (a static of its registry) to the out-pointer.
    let found = unsafe {
        lh::heif_get_encoder_descriptors(
            lh::heif_compression_format_heif_compression_HEVC,
            ID.as_ptr(),
            &mut descriptor,
            1,
        )
    };
    if found != 1 {
        return Err(fail("the replay encoder is not registered"));
    }
    let mut encoder = Owned(ptr::null_mut(), lh::heif_encoder_release);
    // SAFETY: a descriptor libheif gave; a null context is allowed (documented); the new
    // encoder (owned by `encoder`) goes to the out-pointer.
    check(unsafe { lh::heif_context_get_encoder(ptr::null_mut(), descriptor, &mut encoder.0) })?;
    QUEUE.with_borrow_mut(|queue| *queue = pictures.into());
    let result = f(encoder.0);
    let left = QUEUE.with_borrow_mut(|queue| std::mem::take(queue).len());
    match result {
        Ok(_) if left > 0 => Err(fail(&format!("{left} pictures were not used"))),
        result => result,
    }
}

const ID: &std::ffi::CStr = c"imgfs-replay";

/// libheif's `heif_encoder_plugin` (heif_plugin.h, libheif 1.23), up to version 4's fields.
/// libheif-sys leaves the struct opaque; the field order and types here are the header's.
#[repr(C)]
struct EncoderPlugin {
    plugin_api_version: c_int,
    compression_format: lh::heif_compression_format,
    id_name: *const c_char,
    priority: c_int,
    supports_lossy_compression: c_int,
    supports_lossless_compression: c_int,
    get_plugin_name: extern "C" fn() -> *const c_char,
    init_plugin: Option<extern "C" fn()>,
    cleanup_plugin: Option<extern "C" fn()>,
    new_encoder: unsafe extern "C" fn(*mut *mut c_void) -> lh::heif_error,
    free_encoder: unsafe extern "C" fn(*mut c_void),
    set_parameter_quality: extern "C" fn(*mut c_void, c_int) -> lh::heif_error,
    get_parameter_quality: unsafe extern "C" fn(*mut c_void, *mut c_int) -> lh::heif_error,
    set_parameter_lossless: extern "C" fn(*mut c_void, c_int) -> lh::heif_error,
    get_parameter_lossless: unsafe extern "C" fn(*mut c_void, *mut c_int) -> lh::heif_error,
    set_parameter_logging_level: extern "C" fn(*mut c_void, c_int) -> lh::heif_error,
    get_parameter_logging_level: unsafe extern "C" fn(*mut c_void, *mut c_int) -> lh::heif_error,
    list_parameters: extern "C" fn(*mut c_void) -> *const *const c_void,
    set_parameter_integer: extern "C" fn(*mut c_void, *const c_char, c_int) -> lh::heif_error,
    get_parameter_integer: extern "C" fn(*mut c_void, *const c_char, *mut c_int) -> lh::heif_error,
    set_parameter_boolean: extern "C" fn(*mut c_void, *const c_char, c_int) -> lh::heif_error,
    get_parameter_boolean: extern "C" fn(*mut c_void, *const c_char, *mut c_int) -> lh::heif_error,
    set_parameter_string:
        extern "C" fn(*mut c_void, *const c_char, *const c_char) -> lh::heif_error,
    get_parameter_string:
        extern "C" fn(*mut c_void, *const c_char, *mut c_char, c_int) -> lh::heif_error,
    query_input_colorspace: unsafe extern "C" fn(*mut lh::heif_colorspace, *mut lh::heif_chroma),
    encode_image: unsafe extern "C" fn(*mut c_void, *const lh::heif_image, c_int) -> lh::heif_error,
    get_compressed_data:
        unsafe extern "C" fn(*mut c_void, *mut *mut u8, *mut c_int, *mut c_int) -> lh::heif_error,
    // version 2
    query_input_colorspace2:
        unsafe extern "C" fn(*mut c_void, *mut lh::heif_colorspace, *mut lh::heif_chroma),
    // version 3
    query_encoded_size: Option<extern "C" fn(*mut c_void, u32, u32, *mut u32, *mut u32)>,
    // version 4: read only from plugins that declare it; zeroed here.
    minimum_required_libheif_version: u32,
    start_sequence_encoding: Option<extern "C" fn()>,
    encode_sequence_frame: Option<extern "C" fn()>,
    end_sequence_encoding: Option<extern "C" fn()>,
    get_compressed_data2: Option<extern "C" fn()>,
    does_indicate_keyframes: c_int,
}

// SAFETY: the only pointer fields are to 'static C strings and functions, never written.
unsafe impl Sync for EncoderPlugin {}

static PLUGIN: EncoderPlugin = EncoderPlugin {
    plugin_api_version: 3,
    compression_format: lh::heif_compression_format_heif_compression_HEVC,
    id_name: ID.as_ptr(),
    // Below every real encoder: asking libheif for "an HEVC encoder" never finds this one.
    priority: 1,
    supports_lossy_compression: 1,
    supports_lossless_compression: 0,
    get_plugin_name,
    init_plugin: None,
    cleanup_plugin: None,
    new_encoder,
    free_encoder,
    set_parameter_quality: ignore_int,
    get_parameter_quality: get_zero,
    set_parameter_lossless: ignore_int,
    get_parameter_lossless: get_zero,
    set_parameter_logging_level: ignore_int,
    get_parameter_logging_level: get_zero,
    list_parameters,
    set_parameter_integer: no_parameter_int,
    get_parameter_integer: no_parameter_get_int,
    set_parameter_boolean: no_parameter_int,
    get_parameter_boolean: no_parameter_get_int,
    set_parameter_string: no_parameter_string,
    get_parameter_string: no_parameter_get_string,
    query_input_colorspace,
    encode_image,
    get_compressed_data,
    query_input_colorspace2,
    query_encoded_size: None,
    minimum_required_libheif_version: 0,
    start_sequence_encoding: None,
    encode_sequence_frame: None,
    end_sequence_encoding: None,
    get_compressed_data2: None,
    does_indicate_keyframes: 0,
};

/// Adds the replay encoder to libheif's registry. Called once, by the initialiser of
/// `heif::LIBHEIF`, which every use of a libheif encoder forces first: libheif's registry
/// is a plain set, so adding to it while another thread looks an encoder up would race.
pub(super) fn register() {
    // SAFETY: PLUGIN is a 'static struct laid out as libheif's heif_encoder_plugin (see
    // EncoderPlugin) declaring version 3, whose fields libheif reads; libheif keeps the
    // pointer, which stays valid for the life of the process. No other thread uses libheif's
    // encoders yet (see above).
    let err = unsafe {
        lh::heif_register_encoder_plugin((&raw const PLUGIN).cast::<lh::heif_encoder_plugin>())
    };
    debug_assert_eq!(err.code, lh::heif_error_code_heif_error_Ok);
}

const fn ok() -> lh::heif_error {
    lh::heif_error {
        code: lh::heif_error_code_heif_error_Ok,
        subcode: lh::heif_suberror_code_heif_suberror_Unspecified,
        message: c"".as_ptr(),
    }
}

const fn refused(message: &'static std::ffi::CStr) -> lh::heif_error {
    lh::heif_error {
        code: lh::heif_error_code_heif_error_Encoder_plugin_error,
        subcode: lh::heif_suberror_code_heif_suberror_Unspecified,
        message: message.as_ptr(),
    }
}

extern "C" fn get_plugin_name() -> *const c_char {
    c"imgfs replay of parallel x265 tiles".as_ptr()
}

/// One encoder instance: the picture taken by the last `encode_image`, handed out a NAL
/// unit per `get_compressed_data`.
struct Replay {
    picture: Option<Bitstream>,
    next: usize,
}

/// # Safety
/// `out` is writable (libheif passes the address of its encoder's instance pointer).
unsafe extern "C" fn new_encoder(out: *mut *mut c_void) -> lh::heif_error {
    let replay = Box::new(Replay {
        picture: None,
        next: 0,
    });
    // SAFETY: the contract above; the box is freed by free_encoder.
    unsafe { *out = Box::into_raw(replay).cast() };
    ok()
}

/// # Safety
/// `encoder` came from new_encoder and is not used after this call.
unsafe extern "C" fn free_encoder(encoder: *mut c_void) {
    // SAFETY: the contract above: a Box<Replay> made by new_encoder, freed once.
    drop(unsafe { Box::from_raw(encoder.cast::<Replay>()) });
}

extern "C" fn ignore_int(_: *mut c_void, _: c_int) -> lh::heif_error {
    ok()
}

/// # Safety
/// `out` is writable.
unsafe extern "C" fn get_zero(_: *mut c_void, out: *mut c_int) -> lh::heif_error {
    // SAFETY: the contract above.
    unsafe { *out = 0 };
    ok()
}

extern "C" fn list_parameters(_: *mut c_void) -> *const *const c_void {
    /// A null-terminated list without entries.
    struct Empty([*const c_void; 1]);
    // SAFETY: one null pointer, never written.
    unsafe impl Sync for Empty {}
    static NONE: Empty = Empty([ptr::null()]);
    NONE.0.as_ptr()
}

extern "C" fn no_parameter_int(_: *mut c_void, _: *const c_char, _: c_int) -> lh::heif_error {
    refused(c"the replay encoder has no parameters")
}

extern "C" fn no_parameter_get_int(
    _: *mut c_void,
    _: *const c_char,
    _: *mut c_int,
) -> lh::heif_error {
    refused(c"the replay encoder has no parameters")
}

extern "C" fn no_parameter_string(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
) -> lh::heif_error {
    refused(c"the replay encoder has no parameters")
}

extern "C" fn no_parameter_get_string(
    _: *mut c_void,
    _: *const c_char,
    _: *mut c_char,
    _: c_int,
) -> lh::heif_error {
    refused(c"the replay encoder has no parameters")
}

/// What the x265 plugin asks for at its default chroma (4:2:0), so libheif converts each
/// tile exactly as it did for the x265 run that made the picture.
///
/// # Safety
/// Both pointers are writable.
unsafe extern "C" fn query_input_colorspace(
    colorspace: *mut lh::heif_colorspace,
    chroma: *mut lh::heif_chroma,
) {
    // SAFETY: the contract above.
    unsafe {
        if *colorspace == lh::heif_colorspace_heif_colorspace_monochrome {
            *chroma = lh::heif_chroma_heif_chroma_planar; // "monochrome" before libheif 1.23
        } else {
            *colorspace = lh::heif_colorspace_heif_colorspace_YCbCr;
            *chroma = lh::heif_chroma_heif_chroma_420;
        }
    }
}

/// # Safety
/// Both pointers are writable.
unsafe extern "C" fn query_input_colorspace2(
    _: *mut c_void,
    colorspace: *mut lh::heif_colorspace,
    chroma: *mut lh::heif_chroma,
) {
    // SAFETY: the same contract.
    unsafe { query_input_colorspace(colorspace, chroma) }
}

/// # Safety
/// `encoder` came from new_encoder and nothing else uses it during the call; `image` is a
/// live image.
unsafe extern "C" fn encode_image(
    encoder: *mut c_void,
    image: *const lh::heif_image,
    _class: c_int,
) -> lh::heif_error {
    // SAFETY: the contract above: exclusive use of the Replay made by new_encoder.
    let replay = unsafe { &mut *encoder.cast::<Replay>() };
    let Some(picture) = QUEUE.with_borrow_mut(VecDeque::pop_front) else {
        return refused(c"replay: more pictures asked for than encoded");
    };
    // SAFETY: a live image (the contract above).
    let size = unsafe {
        (
            lh::heif_image_get_primary_width(image),
            lh::heif_image_get_primary_height(image),
        )
    };
    if (size.0 as u32, size.1 as u32) != picture.size {
        return refused(c"replay: a picture for a tile of another size");
    }
    *replay = Replay {
        picture: Some(picture),
        next: 0,
    };
    ok()
}

/// # Safety
/// `encoder` came from new_encoder and nothing else uses it during the call; `data` and
/// `size` are writable.
unsafe extern "C" fn get_compressed_data(
    encoder: *mut c_void,
    data: *mut *mut u8,
    size: *mut c_int,
    _kind: *mut c_int,
) -> lh::heif_error {
    // SAFETY: the contract above: exclusive use of the Replay made by new_encoder.
    let replay = unsafe { &mut *encoder.cast::<Replay>() };
    let nal = replay
        .picture
        .as_mut()
        .and_then(|picture| picture.nals.get_mut(replay.next));
    // The NAL stays where it is, in the Replay, until the next encode_image or
    // free_encoder: libheif copies each before asking for the next.
    let (ptr, len) = match nal {
        Some(nal) => (nal.as_mut_ptr(), nal.len() as c_int),
        None => (ptr::null_mut(), 0),
    };
    replay.next += 1;
    // SAFETY: the contract above.
    unsafe { (*data, *size) = (ptr, len) };
    ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_found_by_type_and_hvcc_arrays_give_their_units() {
        let mut hvcc = vec![0u8; 22];
        hvcc.push(2); // two arrays
        hvcc.extend([0x20, 0, 1, 0, 2, 0x40, 0x01]); // VPS: one unit of 2 bytes
        hvcc.extend([0x21, 0, 2, 0, 1, 0x42, 0, 3, 0x42, 1, 2]); // SPS: two units
        assert_eq!(
            parameter_sets(&hvcc),
            Some(vec![vec![0x40, 0x01], vec![0x42], vec![0x42, 1, 2]])
        );
        assert_eq!(parameter_sets(&hvcc[..hvcc.len() - 1]), None, "a cut unit");

        let boxed = |kind: &[u8; 4], payload: &[u8]| {
            let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(payload);
            b
        };
        let file = [boxed(b"ftyp", b"heic"), boxed(b"meta", b"abcd")].concat();
        assert_eq!(child(&file, b"meta"), Some(&b"abcd"[..]));
        assert_eq!(child(&file, b"mdat"), None);
        assert_eq!(child(&file[..file.len() - 1], b"meta"), None, "a cut box");
    }
}
