//! One entry of the disk cache: where it lives and how it proves what it holds.
//!
//! The file holds exactly the variant's bytes, so FUSE passthrough can hand it to the
//! kernel as it is (passthrough reads the backing file at the reader's offsets, up to its
//! end: a header inside the file would be read as part of the variant). The header is the
//! file's extended attribute [`XATTR`]: magic, format version, length, checksum of the
//! bytes and the full serialized key. It is set on the temporary file before the rename
//! that publishes it, so an entry appears with its header or not at all.

use std::path::PathBuf;

use twox_hash::{XxHash3_128, XxHash3_64};

use crate::cache::Key;

/// The extended attribute holding an entry's header.
pub const XATTR: &str = "user.imgfs.entry";
const MAGIC: &[u8; 8] = b"imgfs-dc";
/// Bumped when the header or the key's serialization changes: older entries then read
/// as damaged and are converted again.
pub const FORMAT_VERSION: u32 = 1;
/// magic, version, length, checksum, key length.
const FIXED: usize = 8 + 4 + 8 + 8 + 4;

/// The key as the disk stores and compares it: every field, plus `context` (what of the
/// mount's settings shapes the bytes, see `pipeline::Settings::fingerprint`), because the
/// directory outlives a mount and may be shared by mounts with other settings.
pub fn serialize_key(key: &Key, context: &str) -> Vec<u8> {
    let identity = |i: &crate::source::Identity| {
        format!(
            "{} {} {} {} {}",
            i.dev, i.ino, i.size, i.mtime_ns, i.birth_ns
        )
    };
    let mut text = format!(
        "imgfs {FORMAT_VERSION}\n{context}\nsource {}\n",
        identity(&key.version.source)
    );
    for mark in &key.version.marks {
        text += &format!("mark {}\n", identity(mark));
    }
    text += &format!("spec {}\n", key.spec);
    text.into_bytes()
}

/// The name of an entry: a 128-bit hash of its serialized key.
pub fn hash(serialized: &[u8]) -> u128 {
    XxHash3_128::oneshot(serialized)
}

/// Where the entry `hash` lives below the cache directory: one of 256 subdirectories (so no
/// directory grows past a few thousand names), then the hash in hex.
pub fn relative_path(hash: u128) -> PathBuf {
    PathBuf::from(format!("{:02x}/{hash:032x}", hash >> 120))
}

/// The hash an entry's name spells, if `subdir`/`name` is an entry's place.
pub fn parse_name(subdir: &str, name: &str) -> Option<u128> {
    if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hash = u128::from_str_radix(name, 16).ok()?;
    (format!("{:02x}", hash >> 120) == subdir).then_some(hash)
}

/// Temporary files start with this; a writer killed midway leaves one behind.
pub const TEMP_PREFIX: &str = ".tmp-";

/// What an entry says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub len: u64,
    pub checksum: u64,
    pub key: Vec<u8>,
}

pub fn checksum(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

impl Header {
    pub fn of(key: Vec<u8>, bytes: &[u8]) -> Header {
        Header {
            len: bytes.len() as u64,
            checksum: checksum(bytes),
            key,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(FIXED + self.key.len());
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        raw.extend_from_slice(&self.len.to_le_bytes());
        raw.extend_from_slice(&self.checksum.to_le_bytes());
        raw.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        raw.extend_from_slice(&self.key);
        raw
    }

    /// Reads a header back; the reason when `raw` is none of ours.
    pub fn decode(raw: &[u8]) -> Result<Header, String> {
        if raw.len() < FIXED || &raw[..8] != MAGIC {
            return Err("no imgfs header (a foreign file)".into());
        }
        let word = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let half = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let version = half(8);
        if version != FORMAT_VERSION {
            return Err(format!("format version {version}, not {FORMAT_VERSION}"));
        }
        let key_len = half(28) as usize;
        if raw.len() != FIXED + key_len {
            return Err("a damaged header".into());
        }
        Ok(Header {
            len: word(12),
            checksum: word(20),
            key: raw[FIXED..].to_vec(),
        })
    }

    /// Whether this header is the entry of `key` with a file of `file_len` bytes.
    pub fn check(&self, key: &[u8], file_len: u64) -> Result<(), String> {
        if self.key != key {
            return Err("the entry of another key (a hash collision or a copied file)".into());
        }
        if self.len != file_len {
            return Err(format!("{file_len} bytes, the header says {}", self.len));
        }
        Ok(())
    }

    /// Whether the file's bytes are the ones this header was written for, read in chunks
    /// (for files not in the page cache: reading lets the kernel read ahead in large
    /// requests).
    pub fn check_file(&self, file: &std::fs::File) -> Result<(), String> {
        use std::hash::Hasher;
        use std::os::unix::fs::FileExt;
        let mut hasher = XxHash3_64::new();
        let mut chunk = vec![0; 256 << 10];
        let mut offset = 0;
        loop {
            let read = file
                .read_at(&mut chunk, offset)
                .map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            hasher.write(&chunk[..read]);
            offset += read as u64;
        }
        if offset != self.len || hasher.finish() != self.checksum {
            return Err("checksum mismatch (corrupted)".into());
        }
        Ok(())
    }

    /// Whether `bytes` are the ones this header was written for.
    pub fn check_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        if checksum(bytes) != self.checksum {
            return Err("checksum mismatch (corrupted)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Version;
    use crate::source::Identity;

    fn key(spec: &str, marks: usize) -> Key {
        let id = |ino| Identity {
            dev: 1,
            ino,
            size: 100,
            mtime_ns: 1_700_000_000_000_000_001,
            birth_ns: 1_600_000_000_000_000_000,
        };
        Key {
            version: Version {
                source: id(2),
                marks: (0..marks as u64).map(|n| id(10 + n)).collect(),
            },
            spec: spec.into(),
        }
    }

    #[test]
    fn every_part_of_the_key_and_the_context_changes_the_serialization() {
        let base = serialize_key(&key("format,webp", 0), "q=80");
        assert_ne!(base, serialize_key(&key("format,heic", 0), "q=80"));
        assert_ne!(base, serialize_key(&key("format,webp", 1), "q=80"));
        assert_ne!(base, serialize_key(&key("format,webp", 0), "q=81"));
        let mut moved = key("format,webp", 0);
        moved.version.source.mtime_ns += 1;
        assert_ne!(base, serialize_key(&moved, "q=80"));
        assert_eq!(base, serialize_key(&key("format,webp", 0), "q=80"));
    }

    #[test]
    fn names_round_trip_and_foreign_names_are_not_entries() {
        let h = hash(b"some key");
        let path = relative_path(h);
        let (dir, name) = (path.parent().unwrap(), path.file_name().unwrap());
        assert_eq!(
            parse_name(dir.to_str().unwrap(), name.to_str().unwrap()),
            Some(h)
        );
        assert_eq!(parse_name("zz", name.to_str().unwrap()), None);
        assert_eq!(parse_name(dir.to_str().unwrap(), "notes.txt"), None);
        let temp = format!("{TEMP_PREFIX}{h:032x}-1-1");
        assert_eq!(parse_name(dir.to_str().unwrap(), &temp), None);
    }

    #[test]
    fn reading_the_file_in_chunks_checks_the_same_bytes() {
        let bytes: Vec<u8> = (0..700_000u32).map(|i| ((i * 31) >> 7) as u8).collect();
        let header = Header::of(b"key".to_vec(), &bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        std::fs::write(&path, &bytes).unwrap();
        let open = || std::fs::File::open(&path).unwrap();
        assert_eq!(header.check_file(&open()), Ok(()));
        let mut flipped = bytes.clone();
        flipped[600_000] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(header.check_file(&open()).is_err());
        std::fs::write(&path, &bytes[..300_000]).unwrap();
        assert!(header.check_file(&open()).is_err());
    }

    #[test]
    fn a_header_round_trips_and_detects_every_damage() {
        let key = serialize_key(&key("format,webp", 1), "");
        let bytes = b"the variant's bytes".to_vec();
        let header = Header::of(key.clone(), &bytes);
        let decoded = Header::decode(&header.encode()).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(decoded.check(&key, bytes.len() as u64), Ok(()));
        assert_eq!(decoded.check_bytes(&bytes), Ok(()));
        // Truncated file, corrupted byte, another key, foreign or damaged attribute.
        assert!(decoded.check(&key, 3).is_err());
        let mut corrupted = bytes.clone();
        corrupted[4] ^= 1;
        assert!(decoded.check_bytes(&corrupted).is_err());
        assert!(decoded.check(b"another key", bytes.len() as u64).is_err());
        assert!(Header::decode(b"user data").is_err());
        let encoded = header.encode();
        assert!(Header::decode(&encoded[..encoded.len() - 1]).is_err());
        let mut other_version = encoded.clone();
        other_version[8] = 99;
        assert!(Header::decode(&other_version)
            .unwrap_err()
            .contains("version"));
    }
}
