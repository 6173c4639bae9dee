//! Who asks, and whether the mount would let them: the kernel checks a variant's own mode
//! and ACL (`default_permissions`, `FUSE_POSIX_ACL`), but not the directories of an in-root
//! symlink's target nor the watermark images a spec names. Those are judged here by the
//! same rule the kernel applies to the attributes the mount shows (owner, group or other
//! class of the mode bits, or the file's POSIX ACL where it has one; root may read and
//! search anything), so a variant is exactly as readable as its inputs.

use std::io;
use std::sync::OnceLock;

use tracing::debug;

use super::{acl, Found, Meta};

/// Read permission on a file.
pub const READ: u32 = 4;
/// Search (execute) permission on a directory.
pub const SEARCH: u32 = 1;

/// The process a request comes from. Supplementary groups are read from /proc only when
/// a check needs them.
#[derive(Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    groups: OnceLock<Vec<u32>>,
}

impl Caller {
    pub fn new(uid: u32, gid: u32, pid: u32) -> Caller {
        Caller {
            uid,
            gid,
            pid,
            groups: OnceLock::new(),
        }
    }

    /// Root: passes every check (the kernel grants CAP_DAC_OVERRIDE the same).
    pub fn root() -> Caller {
        Caller::new(0, 0, 0)
    }

    /// Whether `want` (READ, SEARCH) is granted on `file`.
    pub fn may(&self, file: &Found, want: u32) -> bool {
        self.may_on(&file.meta, || file.access_acl(), want)
    }

    /// Whether `want` is granted on a file of status `meta` whose ACL `acl` reads, as the
    /// kernel's `acl_permission_check` decides: the owner's class never depends on an ACL,
    /// and an ACL is read only where the group class grants something (an ACL's mask is
    /// shown there). An ACL that cannot be read grants nothing.
    fn may_on(
        &self,
        meta: &Meta,
        acl: impl FnOnce() -> io::Result<Option<Vec<u8>>>,
        want: u32,
    ) -> bool {
        if self.uid == 0 {
            return true;
        }
        if meta.uid != self.uid && meta.mode & 0o070 != 0 && !meta.is_symlink() {
            match acl() {
                Ok(Some(acl)) => {
                    let owners = (meta.uid, meta.gid);
                    return acl::grants(&acl, owners, self.uid, |g| self.in_group(g), want);
                }
                Ok(None) => {}
                Err(err) => {
                    debug!("an ACL could not be read ({err}): access refused");
                    return false;
                }
            }
        }
        let class = if meta.uid == self.uid {
            meta.mode >> 6
        } else if self.in_group(meta.gid) {
            meta.mode >> 3
        } else {
            meta.mode
        };
        class & want == want
    }

    fn in_group(&self, gid: u32) -> bool {
        gid == self.gid || self.groups().contains(&gid)
    }

    fn groups(&self) -> &[u32] {
        self.groups.get_or_init(|| supplementary_groups(self.pid))
    }
}

/// The `Groups:` line of /proc/PID/status; none if the process is gone.
fn supplementary_groups(pid: u32) -> Vec<u32> {
    if pid == 0 {
        return Vec::new();
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|status| parse_groups(&status))
        .unwrap_or_default()
}

fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mode: u32, uid: u32, gid: u32) -> Meta {
        Meta::example(mode, uid, gid)
    }

    fn no_acl() -> io::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// An ACL in the kernel's format from (tag, permissions, id) entries.
    fn acl_of(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        acl
    }

    const ANY: u32 = u32::MAX;

    /// Fourth hostile review of 2026-12-03: `user:nobody:---` on a file of mode 644 did not
    /// keep nobody out.
    #[test]
    fn a_named_user_entry_of_an_acl_is_judged_before_the_other_class() {
        // setfacl -m u:65534:--- on 0644 root:root: user::rw- user:65534:--- group::r-- mask::r-- other::r--
        let denied = acl_of(&[
            (1, 6, ANY),
            (2, 0, 65534),
            (4, 4, ANY),
            (0x10, 4, ANY),
            (0x20, 4, ANY),
        ]);
        let file = meta(0o644, 0, 0);
        let acl = || Ok(Some(denied.clone()));
        assert!(!Caller::new(65534, 65534, 0).may_on(&file, acl, READ));
        assert!(Caller::new(1000, 1000, 0).may_on(&file, acl, READ));
        assert!(Caller::root().may_on(&file, acl, READ));
        // A named user's grant is cut by the mask; a group's deny holds unless another group of
        // the caller's grants.
        let granted = acl_of(&[
            (1, 6, ANY),
            (2, 4, 1000),
            (4, 0, ANY),
            (8, 4, 27),
            (0x10, 4, ANY),
            (0x20, 0, ANY),
        ]);
        let file = meta(0o640, 0, 5);
        let acl = || Ok(Some(granted.clone()));
        assert!(Caller::new(1000, 1000, 0).may_on(&file, acl, READ));
        assert!(
            !Caller::new(1001, 5, 0).may_on(&file, acl, READ),
            "the owning group has ---"
        );
        assert!(
            Caller::new(1002, 27, 0).may_on(&file, acl, READ),
            "a named group grants"
        );
        assert!(
            !Caller::new(1003, 1003, 0).may_on(&file, acl, READ),
            "other has ---"
        );
        let masked = acl_of(&[
            (1, 6, ANY),
            (2, 4, 1000),
            (4, 4, ANY),
            (0x10, 0, ANY),
            (0x20, 0, ANY),
        ]);
        assert!(!Caller::new(1000, 1000, 0).may_on(
            &meta(0o610, 0, 0),
            || Ok(Some(masked.clone())),
            READ
        ));
        // An ACL that cannot be read, or is not one, grants nothing.
        let broken = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!Caller::new(1000, 1000, 0).may_on(&meta(0o644, 0, 0), broken, READ));
        assert!(!Caller::new(1000, 1000, 0).may_on(
            &meta(0o644, 0, 0),
            || Ok(Some(vec![1, 0])),
            READ
        ));
        // The owner's class and a mode without group bits never read the ACL.
        let unread = || -> io::Result<Option<Vec<u8>>> { panic!("read the ACL") };
        assert!(Caller::new(1000, 1000, 0).may_on(&meta(0o600, 1000, 0), unread, READ));
        assert!(Caller::new(1000, 1000, 0).may_on(&meta(0o604, 0, 0), unread, READ));
    }

    #[test]
    fn a_variant_shows_its_sources_acl_cut_to_read() {
        let acl = acl_of(&[
            (1, 7, ANY),
            (2, 7, 1000),
            (4, 5, ANY),
            (0x10, 7, ANY),
            (0x20, 1, ANY),
        ]);
        let shown = acl::read_only(&acl).unwrap();
        assert_eq!(
            shown,
            acl_of(&[
                (1, 4, ANY),
                (2, 4, 1000),
                (4, 4, ANY),
                (0x10, 4, ANY),
                (0x20, 0, ANY)
            ])
        );
        assert_eq!(acl::read_only(&[2, 0, 0, 0, 1]), None);
    }

    #[test]
    fn the_mode_class_of_the_caller_decides() {
        let user = Caller::new(1000, 1000, 0);
        assert!(user.may_on(&meta(0o600, 1000, 0), no_acl, READ));
        assert!(!user.may_on(&meta(0o600, 0, 1000), no_acl, READ));
        assert!(user.may_on(&meta(0o640, 0, 1000), no_acl, READ));
        assert!(
            !user.may_on(&meta(0o604, 0, 1000), no_acl, READ),
            "group class applies, not other"
        );
        assert!(user.may_on(&meta(0o604, 0, 0), no_acl, READ));
        assert!(!user.may_on(&meta(0o700, 0, 0), no_acl, SEARCH));
        assert!(user.may_on(&meta(0o711, 0, 0), no_acl, SEARCH));
        assert!(Caller::root().may_on(&meta(0o000, 5, 5), no_acl, READ));
    }

    #[test]
    fn supplementary_groups_count_as_the_group_class() {
        let status = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 100 \nNgid:\t0\n";
        assert_eq!(parse_groups(status), vec![24, 27, 100]);
        let caller = Caller::new(1000, 1000, 0);
        caller.groups.set(vec![27]).unwrap();
        assert!(caller.may_on(&meta(0o040, 0, 27), no_acl, READ));
        assert!(!caller.may_on(&meta(0o040, 0, 28), no_acl, READ));
        // A process that is gone has no supplementary groups.
        assert!(supplementary_groups(0).is_empty());
    }
}
