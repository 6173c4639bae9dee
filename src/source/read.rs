//! Reading one version of a file: its bytes and the identity they belong to.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Identity, Meta};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// Reads of a file that keeps changing before giving up (1 + 2 + 4 + 8 ms apart).
const ATTEMPTS: u32 = 5;

/// Reads the whole of `file` (a regular file), refusing what exceeds `limits` before
/// reading it. The bytes are one version of the file: if it changes while being read, it
/// is read again; if it never holds still, EIO.
pub fn read_file(file: &File, name: &Path, limits: &Limits) -> Result<(Vec<u8>, Identity)> {
    let stat = |file: &File| Meta::of(file).map_err(|e| Error::io(name.display(), e.into()));
    for attempt in 0..ATTEMPTS {
        let before = stat(file)?;
        if !before.is_file() {
            return Err(Error::NotFound(format!(
                "{}: not a regular file",
                name.display()
            )));
        }
        limits.check_source_bytes(before.size)?;
        let mut bytes = Vec::with_capacity(before.size as usize);
        Positioned { file, at: 0 }
            .take(limits.max_source_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(name.display(), e))?;
        limits.check_source_bytes(bytes.len() as u64)?;
        let after = stat(file)?.identity();
        if before.identity() == after && bytes.len() as u64 == after.size {
            return Ok((bytes, after));
        }
        // Most likely caught in the middle of a write: give the writer time to finish it
        // (three attempts back to back all failed under a rewrite every 3 ms).
        if attempt + 1 < ATTEMPTS {
            std::thread::sleep(std::time::Duration::from_millis(1 << attempt));
        }
    }
    Err(Error::Decode(format!(
        "{}: changed on every read",
        name.display()
    )))
}

/// Up to `len` bytes of `file` from `offset`, fewer only at its end (a read of an original).
pub fn read_range(file: &File, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len as usize);
    Positioned { file, at: offset }
        .take(u64::from(len))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads from an offset with pread, so a file shared by several readers needs no seek.
struct Positioned<'a> {
    file: &'a File,
    at: u64,
}

impl Read for Positioned<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_refuse_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 100]).unwrap();
        let limits = Limits {
            max_source_bytes: 10,
            ..Limits::default()
        };
        let file = File::open(&big).unwrap();
        assert_eq!(
            read_file(&file, &big, &limits).unwrap_err().errno(),
            libc::EFBIG
        );
        let (bytes, id) = read_file(&file, &big, &Limits::default()).unwrap();
        assert_eq!((bytes.len(), id.size), (100, 100));
        // A second read of the same open file starts again at the beginning.
        assert_eq!(
            read_file(&file, &big, &Limits::default()).unwrap().0.len(),
            100
        );
    }
}
