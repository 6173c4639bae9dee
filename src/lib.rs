//! imgfs: Alibaba Cloud OSS `x-oss-process` image processing on a read-only FUSE mount.
//!
//! Data flows one way (docs/ARCHITECTURE.md): [`spec`] parses a name into a validated
//! [`spec::Spec`]; [`pipeline`] decodes, runs the operations and encodes; [`source`] opens
//! the files of the source tree, confined to its root and judged as the caller; [`cache`]
//! keeps results in a byte-bounded LRU with single-flight, and on disk across restarts; [`convert`] runs conversions on
//! workers; [`core`] is the filesystem (names, inodes, versions, handles) with no FUSE type;
//! [`fuse`] is the one adapter to the kernel; [`warm`] fills the disk cache ahead of a mount.

pub mod cache;
pub mod cli;
pub mod convert;
pub mod core;
pub mod error;
pub mod fuse;
pub mod limits;
pub mod options;
pub mod pipeline;
pub mod source;
pub mod spec;
pub mod warm;

pub use error::{Error, Result};
