//! The arguments of one operation: `name,key_value,key_value` or `name,value`.

use crate::error::{Error, Result};

/// The keyed arguments of one operation, checked for unknown and repeated keys.
pub(crate) struct KeyedArgs<'a> {
    op: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> KeyedArgs<'a> {
    /// Splits each argument on its FIRST `_` (Base64 values may contain `_`).
    pub(crate) fn parse(op: &'a str, args: &[&'a str], allowed: &[&str]) -> Result<Self> {
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(args.len());
        for arg in args {
            let Some((key, value)) = arg.split_once('_') else {
                return Err(Error::spec(format!(
                    "{op}: argument '{arg}' is not key_value (keys: {})",
                    allowed.join(", ")
                )));
            };
            if !allowed.contains(&key) {
                return Err(Error::spec(format!(
                    "{op}: unknown key '{key}' (keys: {})",
                    allowed.join(", ")
                )));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(Error::spec(format!("{op}: key '{key}' given twice")));
            }
            pairs.push((key, value));
        }
        Ok(KeyedArgs { op, pairs })
    }

    pub(crate) fn raw(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// An integer in `[min, max]`, or None when absent.
    pub(crate) fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>> {
        self.raw(key)
            .map(|v| parse_int(&format!("{} {key}", self.op), v, min, max))
            .transpose()
    }

    pub(crate) fn uint(&self, key: &str, min: u32, max: u32) -> Result<Option<u32>> {
        Ok(self
            .int(key, i64::from(min), i64::from(max))?
            .map(|v| v as u32))
    }

    /// One of a fixed set of words, or None when absent.
    pub(crate) fn word<T: Copy>(&self, key: &str, words: &[(&str, T)]) -> Result<Option<T>> {
        let Some(value) = self.raw(key) else {
            return Ok(None);
        };
        words
            .iter()
            .find(|(w, _)| *w == value)
            .map(|(_, t)| Some(*t))
            .ok_or_else(|| {
                let names: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
                Error::spec(format!(
                    "{} {key}: '{value}' is not one of {}",
                    self.op,
                    names.join(", ")
                ))
            })
    }

    /// A colour written RRGGBB.
    pub(crate) fn color(&self, key: &str) -> Result<Option<[u8; 3]>> {
        self.raw(key)
            .map(|v| parse_color(&format!("{} {key}", self.op), v))
            .transpose()
    }
}

/// The single bare value of an operation such as `rotate,90`.
pub(crate) fn single<'a>(op: &str, args: &[&'a str], what: &str) -> Result<&'a str> {
    match args {
        [value] if !value.is_empty() => Ok(value),
        [] | [_] => Err(Error::spec(format!("{op}: missing value ({what})"))),
        _ => Err(Error::spec(format!("{op}: takes one value ({what})"))),
    }
}

pub(crate) fn parse_int(what: &str, value: &str, min: i64, max: i64) -> Result<i64> {
    let valid_digits = {
        let digits = value.strip_prefix('-').unwrap_or(value);
        !digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let parsed = if valid_digits {
        value.parse::<i64>().ok()
    } else {
        None
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(n) => Err(Error::spec(format!(
            "{what}: {n} is out of range [{min}, {max}]"
        ))),
        None => Err(Error::spec(format!(
            "{what}: '{value}' is not a whole number in [{min}, {max}]"
        ))),
    }
}

pub(crate) fn parse_color(what: &str, value: &str) -> Result<[u8; 3]> {
    let bytes = value.as_bytes();
    if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::spec(format!(
            "{what}: '{value}' is not a colour RRGGBB"
        )));
    }
    let channel = |i: usize| u8::from_str_radix(&value[i..i + 2], 16).unwrap_or(0);
    Ok([channel(0), channel(2), channel(4)])
}

pub(crate) fn color_hex(c: [u8; 3]) -> String {
    format!("{:02X}{:02X}{:02X}", c[0], c[1], c[2])
}

/// Appends `key_value` to a canonical operation when the value differs from its default.
pub(crate) fn push_kv(out: &mut String, key: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = write!(out, ",{key}_{value}");
}
