//! Who asks, and whether the mount would let them: the kernel checks a variant's own mode
//! (`default_permissions`), but not the directories of an in-root symlink's target nor the
//! watermark images a spec names. Those are judged here by the same rule the kernel applies
//! to the attributes the mount shows (owner, group or other class of the mode bits; root
//! may read and search anything), so a variant is exactly as readable as its inputs.

use std::sync::OnceLock;

use super::Meta;

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

    /// Whether `want` (READ, SEARCH) is granted on a file of status `meta`.
    pub fn may(&self, meta: &Meta, want: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let class = if meta.uid == self.uid {
            meta.mode >> 6
        } else if meta.gid == self.gid || self.groups().contains(&meta.gid) {
            meta.mode >> 3
        } else {
            meta.mode
        };
        class & want == want
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

    #[test]
    fn the_mode_class_of_the_caller_decides() {
        let user = Caller::new(1000, 1000, 0);
        assert!(user.may(&meta(0o600, 1000, 0), READ));
        assert!(!user.may(&meta(0o600, 0, 1000), READ));
        assert!(user.may(&meta(0o640, 0, 1000), READ));
        assert!(
            !user.may(&meta(0o604, 0, 1000), READ),
            "group class applies, not other"
        );
        assert!(user.may(&meta(0o604, 0, 0), READ));
        assert!(!user.may(&meta(0o700, 0, 0), SEARCH));
        assert!(user.may(&meta(0o711, 0, 0), SEARCH));
        assert!(Caller::root().may(&meta(0o000, 5, 5), READ));
    }

    #[test]
    fn supplementary_groups_count_as_the_group_class() {
        let status = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 100 \nNgid:\t0\n";
        assert_eq!(parse_groups(status), vec![24, 27, 100]);
        let caller = Caller::new(1000, 1000, 0);
        caller.groups.set(vec![27]).unwrap();
        assert!(caller.may(&meta(0o040, 0, 27), READ));
        assert!(!caller.may(&meta(0o040, 0, 28), READ));
        // A process that is gone has no supplementary groups.
        assert!(supplementary_groups(0).is_empty());
    }
}
