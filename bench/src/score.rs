//! Decoding outputs and scoring them: SSIMULACRA2 (and, for the rate–distortion case, DSSIM)
//! of an output against the decoded source, resized (Lanczos3, image crate — not imgfs's
//! resizer) to the output's size.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::rc::Rc;

use dssim_core::{Dssim, DssimImage};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use imgfs::pipeline::codec::{self, DecodeRequest};
use imgfs::spec::Format;
use rgb::FromSlice;
use ssimulacra2::{compute_frame_ssimulacra2, ColorPrimaries, Rgb, TransferCharacteristic};

use crate::util::Res;

type PerSize<T> = RefCell<HashMap<(u32, u32), Rc<T>>>;

/// A benchmark photo: its file, and its decoded pixels and references made on demand.
pub struct Photo {
    pub path: PathBuf,
    pub name: String,
    pub width: u32,
    pub height: u32,
    decoded: OnceCell<Rc<RgbImage>>,
    references: PerSize<RgbImage>,
    /// The references prepared for DSSIM (its multi-scale Lab planes), per size.
    dssim_refs: PerSize<DssimImage<f32>>,
}

impl Photo {
    pub fn open(path: PathBuf) -> Res<Photo> {
        let (width, height) =
            image::image_dimensions(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        Ok(Photo {
            path,
            name,
            width,
            height,
            decoded: OnceCell::new(),
            references: RefCell::new(HashMap::new()),
            dssim_refs: RefCell::new(HashMap::new()),
        })
    }

    pub fn megapixels(&self) -> f64 {
        f64::from(self.width) * f64::from(self.height) / 1e6
    }

    pub fn bytes(&self) -> Res<Vec<u8>> {
        std::fs::read(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// The source as a viewer shows it (EXIF orientation applied), decoded by the image crate.
    fn decoded(&self) -> Res<Rc<RgbImage>> {
        if let Some(image) = self.decoded.get() {
            return Ok(image.clone());
        }
        let fail = |e: image::ImageError| format!("{}: {e}", self.name);
        let bytes = self.bytes()?;
        let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
        let mut decoder = reader.into_decoder().map_err(fail)?;
        let orientation = decoder.orientation().map_err(fail)?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(fail)?;
        image.apply_orientation(orientation);
        Ok(self.decoded.get_or_init(|| Rc::new(image.to_rgb8())).clone())
    }

    /// The source resized to `width`×`height`, the reference an output of that size is scored on.
    pub fn reference(&self, width: u32, height: u32) -> Res<Rc<RgbImage>> {
        let full = self.decoded()?;
        if (full.width(), full.height()) == (width, height) {
            return Ok(full);
        }
        let mut refs = self.references.borrow_mut();
        Ok(refs
            .entry((width, height))
            .or_insert_with(|| Rc::new(image::imageops::resize(&*full, width, height, FilterType::Lanczos3)))
            .clone())
    }

    /// Drops the decoded pixels (full-size photos are tens of MB each).
    pub fn forget(&self) {
        self.references.borrow_mut().clear();
        self.dssim_refs.borrow_mut().clear();
    }

    /// The reference at `width`×`height` as DSSIM compares it.
    fn dssim_reference(&self, dssim: &Dssim, width: u32, height: u32) -> Res<Rc<DssimImage<f32>>> {
        if let Some(r) = self.dssim_refs.borrow().get(&(width, height)) {
            return Ok(r.clone());
        }
        let r = Rc::new(dssim_image(dssim, &*self.reference(width, height)?)?);
        self.dssim_refs.borrow_mut().insert((width, height), r.clone());
        Ok(r)
    }
}

/// Decodes an output: HEIF/AVIF through libheif (via imgfs's codec), the rest with the image crate.
pub fn decode(bytes: &[u8]) -> Res<RgbImage> {
    match codec::detect(bytes) {
        Some(Format::Heic | Format::Avif) => {
            let header = codec::probe(bytes).map_err(|e| e.to_string())?;
            let request = DecodeRequest { min_size: None, auto_orient: true };
            let decoded = codec::decode(bytes, &header, request).map_err(|e| e.to_string())?;
            Ok(decoded.image.to_rgb8())
        }
        _ => Ok(image::load_from_memory(bytes).map_err(|e| format!("decoding output: {e}"))?.to_rgb8()),
    }
}

/// SSIMULACRA2 of `output` (encoded bytes) against `photo` at the output's size;
/// also returns the output's size.
pub fn score(photo: &Photo, output: &[u8]) -> Res<(f64, (u32, u32))> {
    let distorted = decode(output)?;
    let size = distorted.dimensions();
    let reference = photo.reference(size.0, size.1)?;
    let s = compute_frame_ssimulacra2(to_rgb(&reference)?, to_rgb(&distorted)?)
        .map_err(|e| format!("ssimulacra2: {e}"))?;
    Ok((s, size))
}

/// Both metrics of one output.
#[derive(Clone, Copy, Debug)]
pub struct Scores {
    /// SSIMULACRA2: higher is better (70 high quality, 90 very high).
    pub ssim2: f64,
    /// DSSIM: 0 is identical, higher is worse.
    pub dssim: f64,
    pub size: (u32, u32),
}

/// SSIMULACRA2 and DSSIM of `output` against `photo` at the output's size.
pub fn scores(photo: &Photo, output: &[u8]) -> Res<Scores> {
    let distorted = decode(output)?;
    let size = distorted.dimensions();
    let reference = photo.reference(size.0, size.1)?;
    let ssim2 = compute_frame_ssimulacra2(to_rgb(&reference)?, to_rgb(&distorted)?)
        .map_err(|e| format!("ssimulacra2: {e}"))?;
    drop(reference);
    let dssim = Dssim::new();
    let original = photo.dssim_reference(&dssim, size.0, size.1)?;
    let (val, _) = dssim.compare(&original, dssim_image(&dssim, &distorted)?);
    Ok(Scores { ssim2, dssim: f64::from(val), size })
}

fn dssim_image(dssim: &Dssim, image: &RgbImage) -> Res<DssimImage<f32>> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    dssim.create_image_rgb(image.as_raw().as_rgb(), w, h).ok_or_else(|| "dssim: bad image size".to_string())
}

fn to_rgb(image: &RgbImage) -> Res<Rgb> {
    let data = image.pixels().map(|p| p.0.map(|c| f32::from(c) / 255.0)).collect();
    Rgb::new(
        data,
        image.width() as usize,
        image.height() as usize,
        TransferCharacteristic::SRGB,
        ColorPrimaries::BT709,
    )
    .map_err(|e| format!("ssimulacra2 input: {e:?}"))
}
