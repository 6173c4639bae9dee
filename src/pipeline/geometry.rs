//! crop, indexcrop, circle, rounded-corners, rotate, flip.

use image::DynamicImage;

use super::OpContext;
use crate::error::{Error, Result};
use crate::spec::Op;

pub(super) fn apply(_image: DynamicImage, op: &Op, _ctx: &OpContext<'_>) -> Result<DynamicImage> {
    Err(Error::spec(format!(
        "{}: not implemented yet",
        op.canonical()
    )))
}
