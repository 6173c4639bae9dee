//! POSIX access ACLs (`setfacl`): a file's extended attribute `system.posix_acl_access`,
//! read and judged as the kernel judges it (fourth hostile review of 2026-12-03: an entry
//! `user:nobody:---` on a file of mode 644 was ignored, and nobody read it through the
//! mount). The mount hands each inode's ACL to the kernel (`FUSE_POSIX_ACL`), which then
//! judges the mount's own files with it; imgfs judges what it reads for a variant (sources
//! behind links, watermark images, the directories on their way) with [`Acl::grants`].
//!
//! The attribute's format is the kernel's (`include/uapi/linux/posix_acl_xattr.h`): a
//! little-endian `u32` version 2, then entries of `u16` tag, `u16` permissions, `u32` id.
//! Hand-written because no crate reads it without linking libacl.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The extended attribute holding a file's access ACL.
pub const ACCESS_ACL: &str = "system.posix_acl_access";

/// Largest ACL read (ext4 keeps all of a file's attributes in one 4 KiB block).
const MAX_ACL_BYTES: usize = 64 << 10;

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// The access ACL of the file open at `fd` (an `O_PATH` descriptor does: it is read through
/// the descriptor's /proc link), or `None` where it has none or the file system keeps none.
pub fn read(fd: impl AsFd) -> io::Result<Option<Vec<u8>>> {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let mut value = vec![0; 4 + 8 * 16];
    loop {
        match rustix::fs::getxattr(link.as_str(), ACCESS_ACL, &mut value) {
            Ok(len) => {
                value.truncate(len);
                return Ok(Some(value));
            }
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(rustix::io::Errno::RANGE) if value.len() < MAX_ACL_BYTES => {
                value.resize(value.len() * 4, 0);
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// `acl` as a variant shows it: every entry's permissions cut to read, as the variant's
/// mode is (a variant is read, never written or run). `None` if it is not an ACL.
pub fn read_only(acl: &[u8]) -> Option<Vec<u8>> {
    entries(acl)?;
    let mut shown = acl.to_vec();
    for entry in shown[4..].chunks_exact_mut(8) {
        let perm = u16::from_le_bytes([entry[2], entry[3]]) & 4;
        entry[2..4].copy_from_slice(&perm.to_le_bytes());
    }
    Some(shown)
}

/// One entry: tag, permissions (r = 4, w = 2, x = 1), id.
type Entry = (u16, u32, u32);

fn entries(acl: &[u8]) -> Option<Vec<Entry>> {
    let (version, rest) = acl.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*version) != VERSION || rest.len() % 8 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(8)
            .map(|e| {
                let tag = u16::from_le_bytes([e[0], e[1]]);
                let perm = u32::from(u16::from_le_bytes([e[2], e[3]]));
                (tag, perm, u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
            })
            .collect(),
    )
}

/// Whether the ACL `acl` grants `want` (r = 4, x = 1) to the user `uid` (in the groups for
/// which `in_group` is true) on a file owned by `owner` and the group `group`, as the kernel's
/// `posix_acl_permission` decides: the owner entry for the owner; else a named user entry,
/// limited by the mask; else the owning group and named group entries the user is in
/// (limited by the mask; one that grants suffices, and if some match but none grants, no);
/// else the other entry. An attribute that is not an ACL grants nothing.
pub fn grants(
    acl: &[u8],
    (owner, group): (u32, u32),
    uid: u32,
    in_group: impl Fn(u32) -> bool,
    want: u32,
) -> bool {
    let Some(entries) = entries(acl) else {
        return false;
    };
    let mask = entries
        .iter()
        .find(|(tag, _, _)| *tag == MASK)
        .map_or(7, |(_, perm, _)| *perm);
    let has = |perm: u32| perm & want == want;
    if uid == owner {
        return entries
            .iter()
            .any(|&(tag, perm, _)| tag == USER_OBJ && has(perm));
    }
    if let Some(&(_, perm, _)) = entries
        .iter()
        .find(|&&(tag, _, id)| tag == USER && id == uid)
    {
        return has(perm & mask);
    }
    let mut in_a_group = false;
    for &(tag, perm, id) in &entries {
        let member = match tag {
            GROUP_OBJ => in_group(group),
            GROUP => in_group(id),
            _ => false,
        };
        if member {
            if has(perm & mask) {
                return true;
            }
            in_a_group = true;
        }
    }
    !in_a_group
        && entries
            .iter()
            .any(|&(tag, perm, _)| tag == OTHER && has(perm))
}
