//! The integration tests as one binary: each test binary links libheif, x265 and
//! libjpeg-turbo statically, so one link instead of one per file.

mod cli;
mod common;
mod faults;
mod hostile;
mod load;
mod mount;
mod operations;
mod web;
