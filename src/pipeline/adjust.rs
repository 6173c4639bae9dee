//! blur, bright, contrast, sharpen.

use image::DynamicImage;

use crate::error::{Error, Result};
use crate::spec::Op;

pub(super) fn apply(_image: DynamicImage, op: &Op) -> Result<DynamicImage> {
    Err(Error::spec(format!(
        "{}: not implemented yet",
        op.canonical()
    )))
}
