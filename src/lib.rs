//! imgfs: Alibaba Cloud OSS `x-oss-process` image processing on a read-only FUSE mount.
//!
//! Data flows one way (docs/ARCHITECTURE.md): [`spec`] parses a name into a validated
//! [`spec::Spec`]; [`pipeline`] decodes, runs the operations and encodes; [`source`] opens
//! the files of the source tree, confined to its root and judged as the caller; [`cache`]
//! keeps results in a byte-bounded LRU with single-flight, and on disk across restarts;
//! [`convert`] runs conversions on workers; [`core`] is the filesystem (names, inodes,
//! versions, handles, the mount's own files, whole-tree views) with no FUSE type; [`fuse`] is
//! the one adapter to the kernel. [`helper`], [`daemon`] and [`logging`] make the binary a
//! mount helper that mount(8) and fstab can run; [`warm`] fills the disk cache ahead of a
//! mount; [`metrics`] and [`stats`] are the numbers a mount shows.

pub mod cache;
pub mod cli;
pub mod convert;
pub mod core;
pub mod daemon;
pub mod error;
pub mod fuse;
pub mod helper;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod options;
pub mod pipeline;
pub mod source;
pub mod spec;
pub mod stats;
pub mod warm;

pub use error::{Error, Result};
