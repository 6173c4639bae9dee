//! An amount users hold (bytes of listings or open variants, open handles), bounded for all
//! users together and for each user by half of that, so that no one user can take it all
//! and refuse everyone else (second hostile review of 2026-12-03).

use std::collections::HashMap;

#[derive(Debug)]
pub struct Shares {
    bound: u64,
    /// Whether one holding that alone passes a bound is still let in (a variant larger
    /// than a user's share may be open alone, as the memory gate lets one conversion above
    /// its budget run alone).
    alone_may_pass: bool,
    total: u64,
    by_uid: HashMap<u32, u64>,
}

/// Which bound an addition would pass: all users', or one user's half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    All(u64),
    User(u64),
}

impl Over {
    /// "all users'" or "this user's", for messages.
    pub fn whose(self) -> &'static str {
        match self {
            Over::All(_) => "all users'",
            Over::User(_) => "this user's",
        }
    }

    /// The bound passed.
    pub fn bound(self) -> u64 {
        match self {
            Over::All(bound) | Over::User(bound) => bound,
        }
    }
}

impl Shares {
    pub fn new(bound: u64, alone_may_pass: bool) -> Shares {
        Shares {
            bound,
            alone_may_pass,
            total: 0,
            by_uid: HashMap::new(),
        }
    }

    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Adds `to_all` to the total and `to_user` to `uid`'s share (they differ where one
    /// thing held by several users counts once in the total), or says which bound that
    /// would pass and adds nothing.
    pub fn add(&mut self, uid: u32, to_all: u64, to_user: u64) -> Result<(), Over> {
        let mine = self.held_by(uid);
        let passes = |held: u64, more: u64, bound: u64| {
            more > 0 && held + more > bound && !(self.alone_may_pass && held == 0)
        };
        if passes(self.total, to_all, self.bound) {
            return Err(Over::All(self.bound));
        }
        if passes(mine, to_user, self.bound / 2) {
            return Err(Over::User(self.bound / 2));
        }
        self.total += to_all;
        if to_user > 0 {
            *self.by_uid.entry(uid).or_insert(0) += to_user;
        }
        Ok(())
    }

    /// Gives back what [`Shares::add`] added.
    pub fn remove(&mut self, uid: u32, to_all: u64, to_user: u64) {
        self.total -= to_all;
        if let Some(mine) = self.by_uid.get_mut(&uid) {
            *mine -= to_user;
            if *mine == 0 {
                self.by_uid.remove(&uid);
            }
        }
    }

    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn held_by(&self, uid: u32) -> u64 {
        self.by_uid.get(&uid).copied().unwrap_or(0)
    }

    /// Whether nothing is held by anyone.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.total == 0 && self.by_uid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_half_and_all_together_at_most_the_bound() {
        let mut shares = Shares::new(100, false);
        shares.add(1, 50, 50).unwrap();
        assert_eq!(shares.add(1, 1, 1), Err(Over::User(50)));
        shares.add(2, 40, 40).unwrap();
        assert_eq!(shares.add(3, 20, 20), Err(Over::All(100)));
        // Counted once in the total, though another user holds it too.
        shares.add(3, 0, 10).unwrap();
        assert_eq!((shares.total(), shares.held_by(3)), (90, 10));
        for (uid, all, mine) in [(1, 50, 50), (2, 40, 40), (3, 0, 10)] {
            shares.remove(uid, all, mine);
        }
        assert!(shares.is_empty());
    }

    #[test]
    fn alone_one_may_pass_where_allowed() {
        let mut strict = Shares::new(100, false);
        assert_eq!(strict.add(1, 150, 150), Err(Over::All(100)));
        let mut lenient = Shares::new(100, true);
        lenient.add(1, 150, 150).unwrap();
        assert_eq!(lenient.add(2, 1, 1), Err(Over::All(100)));
    }
}
