//! watermark: text and image marks.

use image::DynamicImage;

use super::OpContext;
use crate::error::{Error, Result};
use crate::spec::Watermark;

pub(super) fn apply(
    _image: DynamicImage,
    _mark: &Watermark,
    _ctx: &OpContext<'_>,
) -> Result<DynamicImage> {
    Err(Error::spec("watermark: not implemented yet"))
}
