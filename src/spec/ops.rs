//! The pixel operations of x-oss-process and their canonical text.

use super::args::{color_hex, push_kv, single, KeyedArgs};
use crate::error::{Error, Result};

/// Largest coordinate or length accepted in crop-like operations: the largest source side.
pub const MAX_COORD: u32 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Resize(Resize),
    Crop(Crop),
    IndexCrop(IndexCrop),
    Circle { r: u32 },
    RoundedCorners { r: u32 },
    Rotate(u32),
    Flip(Flip),
    Blur { r: u32, s: u32 },
    Bright(i32),
    Contrast(i32),
    Sharpen(u32),
    Watermark(Box<Watermark>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    Lfit,
    Mfit,
    Fill,
    Pad,
    Fixed,
}

/// What the resize targets, after precedence (w/h, then l/s, then p) is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTarget {
    Box { w: Option<u32>, h: Option<u32> },
    Sides { l: Option<u32>, s: Option<u32> },
    Percent(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub target: ResizeTarget,
    /// `limit_1` (default): never enlarge.
    pub limit: bool,
    pub color: [u8; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gravity {
    NorthWest,
    North,
    NorthEast,
    West,
    Center,
    East,
    SouthWest,
    South,
    SouthEast,
}

const GRAVITIES: [(&str, Gravity); 9] = [
    ("nw", Gravity::NorthWest),
    ("north", Gravity::North),
    ("ne", Gravity::NorthEast),
    ("west", Gravity::West),
    ("center", Gravity::Center),
    ("east", Gravity::East),
    ("sw", Gravity::SouthWest),
    ("south", Gravity::South),
    ("se", Gravity::SouthEast),
];

impl Gravity {
    pub fn name(self) -> &'static str {
        GRAVITIES
            .iter()
            .find(|(_, g)| *g == self)
            .map_or("nw", |(n, _)| n)
    }

    /// The top-left corner of a `w`×`h` area placed in a `big_w`×`big_h` image by this gravity.
    pub fn origin(self, big_w: u32, big_h: u32, w: u32, h: u32) -> (i64, i64) {
        let (bw, bh, w, h) = (
            i64::from(big_w),
            i64::from(big_h),
            i64::from(w),
            i64::from(h),
        );
        let x = match self {
            Gravity::NorthWest | Gravity::West | Gravity::SouthWest => 0,
            Gravity::North | Gravity::Center | Gravity::South => bw / 2 - w / 2,
            Gravity::NorthEast | Gravity::East | Gravity::SouthEast => bw - w,
        };
        let y = match self {
            Gravity::NorthWest | Gravity::North | Gravity::NorthEast => 0,
            Gravity::West | Gravity::Center | Gravity::East => bh / 2 - h / 2,
            Gravity::SouthWest | Gravity::South | Gravity::SouthEast => bh - h,
        };
        (x, y)
    }

    /// Horizontal sign of an x margin: +1 pushes right from a west edge, -1 left from an east one.
    pub fn is_east(self) -> bool {
        matches!(
            self,
            Gravity::NorthEast | Gravity::East | Gravity::SouthEast
        )
    }

    pub fn is_south(self) -> bool {
        matches!(
            self,
            Gravity::SouthWest | Gravity::South | Gravity::SouthEast
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub w: Option<u32>,
    pub h: Option<u32>,
    pub x: u32,
    pub y: u32,
    pub gravity: Gravity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Slices `x` px wide, cut along the width.
    X,
    /// Slices `y` px high, cut along the height.
    Y,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexCrop {
    pub axis: Axis,
    pub size: u32,
    pub index: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    Horizontal,
    Vertical,
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// `t`: opacity in percent.
    pub opacity: u32,
    pub gravity: Gravity,
    pub x: u32,
    pub y: u32,
    pub voffset: i32,
    pub content: WatermarkContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatermarkContent {
    Text(TextMark),
    Image(ImageMark),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMark {
    pub text: String,
    pub font: String,
    pub color: [u8; 3],
    pub size: u32,
    pub shadow: u32,
    pub rotate: u32,
    pub fill: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMark {
    /// Relative to the source root; checked to stay inside it when the mark is loaded.
    pub path: String,
    /// `P_n` of the mark's own `?x-oss-process=image/resize,P_n`: percent of the BASE image.
    pub percent: Option<u32>,
}

pub const DEFAULT_FONT: &str = "wqy-zenhei";
/// OSS's font names that imgfs renders; all map to fonts the set-up installs.
pub const FONTS: [&str; 2] = ["wqy-zenhei", "wqy-microhei"];

impl Op {
    /// Parses one pixel operation; None if `name` is not a pixel operation.
    pub(crate) fn parse(name: &str, args: &[&str]) -> Result<Option<Op>> {
        let op = match name {
            "resize" => Op::Resize(parse_resize(args)?),
            "crop" => Op::Crop(parse_crop(args)?),
            "indexcrop" => Op::IndexCrop(parse_indexcrop(args)?),
            "circle" => {
                let a = KeyedArgs::parse(name, args, &["r"])?;
                Op::Circle {
                    r: required(name, "r", a.uint("r", 1, 4096)?)?,
                }
            }
            "rounded-corners" => {
                let a = KeyedArgs::parse(name, args, &["r"])?;
                Op::RoundedCorners {
                    r: required(name, "r", a.uint("r", 1, 4096)?)?,
                }
            }
            "rotate" => Op::Rotate(bare_int(name, args, 0, 360)? as u32),
            "flip" => Op::Flip(match single(name, args, "h, v or hv")? {
                "h" => Flip::Horizontal,
                "v" => Flip::Vertical,
                "hv" | "vh" => Flip::Both,
                other => {
                    return Err(Error::spec(format!(
                        "flip: '{other}' is not one of h, v, hv"
                    )))
                }
            }),
            "blur" => {
                let a = KeyedArgs::parse(name, args, &["r", "s"])?;
                Op::Blur {
                    r: required(name, "r", a.uint("r", 1, 50)?)?,
                    s: required(name, "s", a.uint("s", 1, 50)?)?,
                }
            }
            "bright" => Op::Bright(bare_int(name, args, -100, 100)? as i32),
            "contrast" => Op::Contrast(bare_int(name, args, -100, 100)? as i32),
            "sharpen" => Op::Sharpen(bare_int(name, args, 50, 399)? as u32),
            "watermark" => Op::Watermark(Box::new(super::watermark::parse(args)?)),
            _ => return Ok(None),
        };
        Ok(Some(op))
    }

    /// An operation that changes nothing is dropped from the canonical chain.
    pub(crate) fn is_identity(&self) -> bool {
        matches!(self, Op::Rotate(0 | 360) | Op::Bright(0) | Op::Contrast(0))
    }

    pub fn canonical(&self) -> String {
        let mut out = String::new();
        match self {
            Op::Resize(r) => {
                out.push_str("resize");
                let mode = match r.mode {
                    ResizeMode::Lfit => None,
                    ResizeMode::Mfit => Some("mfit"),
                    ResizeMode::Fill => Some("fill"),
                    ResizeMode::Pad => Some("pad"),
                    ResizeMode::Fixed => Some("fixed"),
                };
                if let Some(m) = mode {
                    push_kv(&mut out, "m", m);
                }
                match r.target {
                    ResizeTarget::Box { w, h } => {
                        if let Some(w) = w {
                            push_kv(&mut out, "w", w);
                        }
                        if let Some(h) = h {
                            push_kv(&mut out, "h", h);
                        }
                    }
                    ResizeTarget::Sides { l, s } => {
                        if let Some(l) = l {
                            push_kv(&mut out, "l", l);
                        }
                        if let Some(s) = s {
                            push_kv(&mut out, "s", s);
                        }
                    }
                    ResizeTarget::Percent(p) => push_kv(&mut out, "p", p),
                }
                if !r.limit {
                    push_kv(&mut out, "limit", 0);
                }
                if r.mode == ResizeMode::Pad && r.color != [255, 255, 255] {
                    push_kv(&mut out, "color", color_hex(r.color));
                }
            }
            Op::Crop(c) => {
                out.push_str("crop");
                if let Some(w) = c.w {
                    push_kv(&mut out, "w", w);
                }
                if let Some(h) = c.h {
                    push_kv(&mut out, "h", h);
                }
                if c.x != 0 {
                    push_kv(&mut out, "x", c.x);
                }
                if c.y != 0 {
                    push_kv(&mut out, "y", c.y);
                }
                if c.gravity != Gravity::NorthWest {
                    push_kv(&mut out, "g", c.gravity.name());
                }
            }
            Op::IndexCrop(c) => {
                out.push_str("indexcrop");
                let axis = if c.axis == Axis::X { "x" } else { "y" };
                push_kv(&mut out, axis, c.size);
                push_kv(&mut out, "i", c.index);
            }
            Op::Circle { r } => out = format!("circle,r_{r}"),
            Op::RoundedCorners { r } => out = format!("rounded-corners,r_{r}"),
            Op::Rotate(d) => out = format!("rotate,{d}"),
            Op::Flip(f) => {
                out = match f {
                    Flip::Horizontal => "flip,h",
                    Flip::Vertical => "flip,v",
                    Flip::Both => "flip,hv",
                }
                .to_string()
            }
            Op::Blur { r, s } => out = format!("blur,r_{r},s_{s}"),
            Op::Bright(v) => out = format!("bright,{v}"),
            Op::Contrast(v) => out = format!("contrast,{v}"),
            Op::Sharpen(v) => out = format!("sharpen,{v}"),
            Op::Watermark(w) => out = super::watermark::canonical(w),
        }
        out
    }
}

pub(crate) fn required<T>(op: &str, key: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::spec(format!("{op}: missing required key '{key}'")))
}

pub(crate) fn bare_int(op: &str, args: &[&str], min: i64, max: i64) -> Result<i64> {
    let value = single(op, args, &format!("a whole number in [{min}, {max}]"))?;
    super::args::parse_int(op, value, min, max)
}

fn parse_resize(args: &[&str]) -> Result<Resize> {
    let a = KeyedArgs::parse(
        "resize",
        args,
        &["m", "w", "h", "l", "s", "limit", "color", "p"],
    )?;
    let mode = a
        .word(
            "m",
            &[
                ("lfit", ResizeMode::Lfit),
                ("mfit", ResizeMode::Mfit),
                ("fill", ResizeMode::Fill),
                ("pad", ResizeMode::Pad),
                ("fixed", ResizeMode::Fixed),
            ],
        )?
        .unwrap_or(ResizeMode::Lfit);
    let (w, h) = (a.uint("w", 1, 16_384)?, a.uint("h", 1, 16_384)?);
    let (l, s) = (a.uint("l", 1, 16_384)?, a.uint("s", 1, 16_384)?);
    let p = a.uint("p", 1, 1000)?;
    let limit = a.uint("limit", 0, 1)?.unwrap_or(1) == 1;
    // The canvas colour only means something to pad; elsewhere it is dropped (canonical form).
    let color = match a.color("color")? {
        Some(color) if mode == ResizeMode::Pad => color,
        _ => [255, 255, 255],
    };
    // Precedence of docs/operations.md: w/h first, then l/s, then p.
    let target = if w.is_some() || h.is_some() {
        ResizeTarget::Box { w, h }
    } else if l.is_some() || s.is_some() {
        ResizeTarget::Sides { l, s }
    } else if let Some(p) = p {
        ResizeTarget::Percent(p)
    } else {
        return Err(Error::spec("resize: needs at least one of w, h, l, s, p"));
    };
    Ok(Resize {
        mode,
        target,
        limit,
        color,
    })
}

fn parse_crop(args: &[&str]) -> Result<Crop> {
    let a = KeyedArgs::parse("crop", args, &["w", "h", "x", "y", "g"])?;
    Ok(Crop {
        w: a.uint("w", 1, MAX_COORD)?,
        h: a.uint("h", 1, MAX_COORD)?,
        x: a.uint("x", 0, MAX_COORD)?.unwrap_or(0),
        y: a.uint("y", 0, MAX_COORD)?.unwrap_or(0),
        gravity: a.word("g", &GRAVITIES)?.unwrap_or(Gravity::NorthWest),
    })
}

pub(crate) fn parse_gravity(a: &KeyedArgs<'_>, default: Gravity) -> Result<Gravity> {
    Ok(a.word("g", &GRAVITIES)?.unwrap_or(default))
}

fn parse_indexcrop(args: &[&str]) -> Result<IndexCrop> {
    let a = KeyedArgs::parse("indexcrop", args, &["x", "y", "i"])?;
    let index = a.uint("i", 0, MAX_COORD)?.unwrap_or(0);
    let (x, y) = (a.uint("x", 1, MAX_COORD)?, a.uint("y", 1, MAX_COORD)?);
    // `y` wins if both are given (docs/operations.md).
    let (axis, size) = match (x, y) {
        (_, Some(y)) => (Axis::Y, y),
        (Some(x), None) => (Axis::X, x),
        (None, None) => return Err(Error::spec("indexcrop: needs x or y")),
    };
    Ok(IndexCrop { axis, size, index })
}
