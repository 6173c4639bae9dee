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

use crate::cache::Converted;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct PinnedBytes {
    bound: u64,
    /// Variants held open, by the address of their bytes (alive while held, so unique).
    variants: HashMap<usize, Variant>,
    /// Bytes each user holds open, each variant counted once per user.
    by_uid: HashMap<u32, u64>,
    total: u64,
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
            bound,
            variants: HashMap::new(),
            by_uid: HashMap::new(),
            total: 0,
        }
    }

    /// Counts `out` as held open by one more handle of `uid`; ENOMEM if that would take all
    /// users past the bound, or `uid` past half of it.
    pub fn pin(&mut self, uid: u32, out: &Converted) -> Result<()> {
        let bytes = out.len();
        let variant = self.variants.get(&address(out));
        let new = variant.is_none();
        let new_to_uid = variant.is_none_or(|v| !v.handles.contains_key(&uid));
        let held = self.by_uid.get(&uid).copied().unwrap_or(0);
        let share = self.bound / 2;
        let over_all = new && self.total > 0 && self.total + bytes > self.bound;
        let over_share = new_to_uid && held > 0 && held + bytes > share;
        if over_all || over_share {
            let whose = if over_all {
                "all users'"
            } else {
                "this user's"
            };
            return Err(Error::NoMemory(format!(
                "not opened: {whose} open variants would hold more than {} (--open-memory {}, \
                 half of it per user)",
                bytesize::ByteSize(if over_all { self.bound } else { share }),
                bytesize::ByteSize(self.bound),
            )));
        }
        let variant = self.variants.entry(address(out)).or_insert(Variant {
            bytes,
            handles: HashMap::new(),
        });
        *variant.handles.entry(uid).or_insert(0) += 1;
        if new {
            self.total += bytes;
        }
        if new_to_uid {
            *self.by_uid.entry(uid).or_insert(0) += bytes;
        }
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
        let bytes = variant.bytes;
        if let Some(held) = self.by_uid.get_mut(&uid) {
            *held -= bytes;
            if *held == 0 {
                self.by_uid.remove(&uid);
            }
        }
        if variant.handles.is_empty() {
            self.variants.remove(&key);
            self.total -= bytes;
        }
    }

    /// Bytes held open by all users.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.total
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
        assert!(pinned.variants.is_empty() && pinned.by_uid.is_empty());
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
