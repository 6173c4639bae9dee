//! imgfs: Alibaba Cloud OSS `x-oss-process` image processing on a read-only FUSE mount.
//!
//! Data flows one way: [`spec`] parses a name into a validated [`spec::Spec`];
//! [`pipeline`] decodes, runs the operations and encodes; [`cache`] keeps results in a
//! byte-bounded LRU with single-flight conversions; [`fs`] adapts all of it to FUSE.

pub mod cache;
pub mod cli;
pub mod error;
pub mod fs;
pub mod limits;
pub mod pipeline;
pub mod source;
pub mod spec;

pub use error::{Error, Result};
