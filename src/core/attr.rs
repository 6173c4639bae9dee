//! File attributes as the mount shows them: source entries as they are, variants
//! read-only with their exact converted size.

use crate::source::Meta;

/// st_blksize of variants: a hint to readers (cp, nginx) to read in large chunks.
const VARIANT_BLKSIZE: u32 = 128 * 1024;

/// What a stat of an inode of the mount answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub meta: Meta,
    /// The mount's own generated files change with every rendering: the kernel must not
    /// keep their attributes (a stale size would cut a read, or pad it).
    pub volatile: bool,
}

impl Attr {
    /// A source entry's own attributes, inode number aside.
    pub fn source(ino: u64, meta: &Meta) -> Attr {
        Attr {
            ino,
            meta: *meta,
            volatile: false,
        }
    }

    /// A variant: its source's owner and times, the source's mode without write bits, its
    /// exact converted size.
    pub fn variant(ino: u64, source: &Meta, size: u64) -> Attr {
        Attr {
            ino,
            meta: Meta {
                size,
                blocks: size.div_ceil(512),
                mode: libc::S_IFREG | (source.mode & 0o7555),
                nlink: 1,
                rdev: 0,
                blksize: VARIANT_BLKSIZE,
                ..*source
            },
            volatile: false,
        }
    }
}
