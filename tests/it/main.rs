//! The integration tests as one binary: each test binary links libheif, x265 and
//! libjpeg-turbo statically, so one link instead of one per file.
//!
//! Tests that mount (or start `imgfs mount`) need root and `/dev/fuse`; each module's doc
//! says which of its tests do. Those that check conversions, not the filesystem, run the
//! library on a temporary directory instead (`common::Library`).

mod cli;
mod common;
mod confinement;
mod deploy;
mod disk_cache;
mod faults;
mod fleet;
mod hostile;
mod load;
mod metadata;
mod mount;
mod odd_sources;
mod operations;
mod serving;
mod target;
mod users;
mod views;
mod warm;
mod web;
