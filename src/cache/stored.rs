//! A conversion's bytes as the cache keeps them.
//!
//! Large outputs live in an anonymous memory file (memfd), mapped into the process. With
//! FUSE passthrough the kernel reads a variant straight from that file, as it reads tmpfs:
//! no request per 128 KiB after its pages were dropped, and no second copy of the bytes in
//! the variant's own page cache. Small outputs (thumbnails, JSON) stay on the heap, where
//! one FUSE read serves them and they cost no file descriptor.

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapMut};
use rustix::fs::{memfd_create, MemfdFlags};
use tracing::debug;

use crate::pipeline::Output;

/// Outputs from this size on go to a memory file (at most cache size / this many files).
pub const MEMORY_FILE_MIN: usize = 256 << 10;

pub enum Stored {
    Heap(Vec<u8>),
    /// A memory file, or a verified disk-cache file (`cache::disk`): the map keeps the
    /// bytes readable here; the file is what the kernel reads from (passthrough).
    Mapped {
        file: File,
        map: Mmap,
    },
}

impl Stored {
    /// Moves `out` into a memory file if it is large enough and one can be made (else, e.g.
    /// out of file descriptors, it stays on the heap: same bytes, served through FUSE).
    pub fn new(out: Output) -> Stored {
        if out.bytes.len() < MEMORY_FILE_MIN {
            return Stored::Heap(out.bytes);
        }
        match memory_file(&out.bytes) {
            Ok((file, map)) => Stored::Mapped { file, map },
            Err(err) => {
                debug!("no memory file for a conversion ({err}); kept on the heap");
                Stored::Heap(out.bytes)
            }
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Stored::Heap(bytes) => bytes,
            Stored::Mapped { map, .. } => map,
        }
    }

    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file holding the bytes (memory or disk cache), if they are in one.
    pub fn backing_file(&self) -> Option<&File> {
        match self {
            Stored::Heap(_) => None,
            Stored::Mapped { file, .. } => Some(file),
        }
    }
}

/// A memfd holding `bytes`, and a read-only map of it. The bytes are written through the
/// map, so its pages count in this process's RSS like the heap they replace.
fn memory_file(bytes: &[u8]) -> io::Result<(File, Mmap)> {
    let file = File::from(memfd_create("imgfs-variant", MemfdFlags::CLOEXEC)?);
    file.set_len(bytes.len() as u64)?;
    // SAFETY: a map is unsound only if its file is written or truncated behind it. This memfd
    // has no name in any directory (only its owner or root could reopen it through /proc);
    // after this line it is written only through this map, never resized, and otherwise only
    // handed to the kernel as the read-only backing file of FUSE passthrough (core/handles.rs).
    let mut map = unsafe { MmapMut::map_mut(&file)? };
    map.copy_from_slice(bytes);
    Ok((file, map.make_read_only()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Format;

    fn output(len: usize) -> Output {
        Output {
            bytes: (0..len).map(|i| (i % 251) as u8).collect(),
            format: Some(Format::Png),
        }
    }

    #[test]
    fn large_outputs_go_to_a_memory_file_with_the_same_bytes() {
        let out = output(MEMORY_FILE_MIN + 4097);
        let expected = out.bytes.clone();
        let stored = Stored::new(out);
        assert_eq!(stored.bytes(), &expected[..]);
        let file = stored.backing_file().expect("a memory file");
        let mut read = Vec::new();
        io::Read::read_to_end(&mut &*file, &mut read).unwrap();
        assert_eq!(read, expected);
    }

    #[test]
    fn small_outputs_stay_on_the_heap() {
        let stored = Stored::new(output(MEMORY_FILE_MIN - 1));
        assert!(stored.backing_file().is_none());
        assert_eq!(stored.len(), (MEMORY_FILE_MIN - 1) as u64);
    }
}
