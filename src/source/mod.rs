//! The source tree, confined and judged: every file a request reads is opened relative to
//! the root's directory descriptor (never by a path string that the kernel resolves from
//! `/`), so nothing outside the root is reached, even through a directory swapped for a
//! symlink while mounted; and every file a variant is made from is judged readable by the
//! caller, as the kernel would judge it through the mount.
//!
//! [`Root`] opens entries; [`Caller`] is who asks; [`read_file`] reads one version of a
//! file, [`read_range`] a part of one.

mod access;
mod meta;
mod read;
mod root;

pub use access::Caller;
pub use meta::{Identity, Meta};
pub use read::{read_file, read_range};
pub use root::{Found, Links, Root};
