//! The memory open files pin: an open variant holds its bytes until release, even once the
//! cache has evicted them, so without a bound anyone could hold open as many distinct
//! variants as they can make and grow the mount's memory without end (second hostile review
//! of 2026-12-03).
//!
//! Each variant is counted once, however many handles hold it (a popular image served to a
//! thousand connections costs its size once), against `--open-memory` for all users
//! together, and no user may pin more than half of it, so one user cannot take it all. One
//! variant larger than a share may still be open alone, as the conversion gate lets one
//! conversion above its budget run alone.

use std::collections::HashMap;
use std::sync::Arc;

use super::shares::Shares;
use crate::cache::Converted;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct PinnedBytes {
    /// Variants held open, by the address of their bytes (alive while held, so unique).
    variants: HashMap<usize, Variant>,
    /// Bytes held open: each variant once in the total, and once for each user holding it.
    shares: Shares,
}

#[derive(Debug)]
struct Variant {
    bytes: u64,
    /// Handles holding it, per user.
    handles: HashMap<u32, u32>,
}

fn address(out: &Converted) -> usize {
    Arc::as_ptr(out) as usize
}

impl PinnedBytes {
    pub fn new(bound: u64) -> PinnedBytes {
        PinnedBytes {
            variants: HashMap::new(),
            shares: Shares::new(bound, true),
        }
    }

    /// Counts `out` as held open by one more handle of `uid`; ENOMEM if that would take all
    /// users past the bound, or `uid` past half of it.
    pub fn pin(&mut self, uid: u32, out: &Converted) -> Result<()> {
        let bytes = out.len();
        let variant = self.variants.get(&address(out));
        let new = variant.is_none();
        let new_to_uid = variant.is_none_or(|v| !v.handles.contains_key(&uid));
        let (to_all, to_user) = (
            if new { bytes } else { 0 },
            if new_to_uid { bytes } else { 0 },
        );
        self.shares.add(uid, to_all, to_user).map_err(|over| {
            Error::NoMemory(format!(
                "not opened: {} open variants would hold more than {} (--open-memory {}, \
                 half of it per user)",
                over.whose(),
                bytesize::ByteSize(over.bound()),
                bytesize::ByteSize(self.shares.bound()),
            ))
        })?;
        let variant = self.variants.entry(address(out)).or_insert(Variant {
            bytes,
            handles: HashMap::new(),
        });
        *variant.handles.entry(uid).or_insert(0) += 1;
        Ok(())
    }

    /// One handle of `uid` holding `out` was released.
    pub fn unpin(&mut self, uid: u32, out: &Converted) {
        let key = address(out);
        let Some(variant) = self.variants.get_mut(&key) else {
            return;
        };
        let Some(handles) = variant.handles.get_mut(&uid) else {
            return;
        };
        *handles -= 1;
        if *handles > 0 {
            return;
        }
        variant.handles.remove(&uid);
        let (bytes, last) = (variant.bytes, variant.handles.is_empty());
        if last {
            self.variants.remove(&key);
        }
        self.shares.remove(uid, if last { bytes } else { 0 }, bytes);
    }

    /// Bytes held open by all users.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.shares.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Stored;

    fn variant(len: usize) -> Converted {
        Arc::new(Stored::Heap(vec![0; len]))
    }

    #[test]
    fn a_variant_counts_once_however_often_it_is_open() {
        let mut pinned = PinnedBytes::new(100);
        let popular = variant(40);
        for uid in [1, 1, 2, 2, 3] {
            pinned.pin(uid, &popular).unwrap();
        }
        assert_eq!(pinned.total(), 40);
        for uid in [1, 1, 2, 2, 3] {
            pinned.unpin(uid, &popular);
        }
        assert_eq!(pinned.total(), 0);
        assert!(pinned.variants.is_empty() && pinned.shares.is_empty());
    }

    #[test]
    fn one_user_holds_at_most_half_and_all_together_at_most_the_bound() {
        let mut pinned = PinnedBytes::new(100);
        let (a, b, c, d) = (variant(30), variant(30), variant(30), variant(30));
        pinned.pin(1, &a).unwrap();
        let err = pinned.pin(1, &b).unwrap_err();
        assert_eq!(err.errno(), libc::ENOMEM);
        assert!(err.to_string().contains("this user's"), "{err}");
        // Another user still has their share, up to the bound for all.
        pinned.pin(2, &b).unwrap();
        pinned.pin(3, &c).unwrap();
        let err = pinned.pin(4, &d).unwrap_err();
        assert!(err.to_string().contains("all users'"), "{err}");
        // A variant someone holds open costs all users nothing more.
        pinned.pin(4, &a).unwrap();
        assert_eq!(pinned.total(), 90);
        pinned.unpin(4, &a);
        pinned.unpin(3, &c);
        pinned.pin(4, &d).unwrap();
        assert_eq!(pinned.total(), 90);
    }

    #[test]
    fn a_variant_larger_than_a_share_may_be_open_alone() {
        let mut pinned = PinnedBytes::new(100);
        let huge = variant(150);
        pinned.pin(1, &huge).unwrap();
        pinned.pin(1, &huge).unwrap();
        assert!(pinned.pin(2, &variant(1)).is_err());
        pinned.unpin(1, &huge);
        pinned.unpin(1, &huge);
        pinned.pin(2, &variant(1)).unwrap();
    }
}
