//! The one permission rule: what a user may do with an object of an account. Every route
//! that reads or writes another account's data (GET, HEAD, version reads, listings, copies,
//! recursive copies) asks it, through [`crate::store::MetaStore::access`] or, for the rows of a
//! listing, [`decide`] with the container's shared directories at hand, inside the
//! [`Readable`] ranges that say where to look.
//!
//! The rule: the owner may do everything; anyone else only what the sharing of the object's
//! own path grants, or else what the nearest ancestor *directory marker* with sharing grants
//! (a shared file grants nothing under its name: `f` shared says nothing of `f/x`).

use crate::api::pithos::Sharing;
use std::collections::HashMap;

/// What the caller may do with an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub owner: bool,
    pub write: bool,
    /// The shared directory the access comes from (`container/path`), when inherited.
    pub shared_by: Option<String>,
}

impl Access {
    pub fn owner() -> Access {
        Access {
            owner: true,
            write: true,
            shared_by: None,
        }
    }
}

/// The rule itself. `own`: the sharing of the object's path; `inherited`: the nearest ancestor
/// directory marker with sharing (`container/path`, its sharing). `None`: no access.
pub fn decide(user: &str, account: &str, own: Option<&Sharing>, inherited: Option<(&str, &Sharing)>) -> Option<Access> {
    if user == account {
        return Some(Access::owner());
    }
    if let Some(s) = own.filter(|s| s.can_read(user)) {
        return Some(Access {
            owner: false,
            write: s.can_write(user),
            shared_by: None,
        });
    }
    let (by, s) = inherited.filter(|(_, s)| s.can_read(user))?;
    Some(Access {
        owner: false,
        write: s.can_write(user),
        shared_by: Some(by.to_string()),
    })
}

/// The directory markers of one container that carry sharing, by name: what the rows of a
/// listing inherit from.
#[derive(Debug, Default)]
pub struct SharedDirs {
    container: String,
    dirs: HashMap<String, Sharing>,
}

impl SharedDirs {
    pub fn new(container: &str, dirs: impl IntoIterator<Item = (String, Sharing)>) -> SharedDirs {
        SharedDirs {
            container: container.to_string(),
            dirs: dirs.into_iter().collect(),
        }
    }

    /// The nearest ancestor of `name` among them: `(container/path, sharing)`.
    pub fn nearest(&self, name: &str) -> Option<(String, &Sharing)> {
        let mut n = name;
        while let Some(pos) = n.rfind('/') {
            n = &n[..pos];
            if let Some(s) = self.dirs.get(n) {
                return Some((format!("{}/{n}", self.container), s));
            }
        }
        None
    }

    /// [`decide`] for one listed object.
    pub fn decide(&self, user: &str, account: &str, name: &str, own: Option<&Sharing>) -> Option<Access> {
        let inherited = self.nearest(name);
        decide(user, account, own, inherited.as_ref().map(|(b, s)| (b.as_str(), *s)))
    }
}

/// Where, in one container, another user can find names they may read: the subtrees of the
/// shared directory markers that grant them reading and the names whose own sharing does, as
/// sorted, merged ranges of names. A listing for them reads only these ranges, so a page costs
/// what it returns (and what is shared), not the size of the container.
#[derive(Debug, Default)]
pub struct Readable {
    /// `[start, end)` in name order, disjoint, sorted.
    ranges: Vec<(String, String)>,
}

/// Where a name stands among the ranges of a [`Readable`].
#[derive(Debug, PartialEq, Eq)]
pub enum Position<'a> {
    Inside,
    /// Outside; the next range starts here.
    Before(&'a str),
    /// Past every range.
    After,
}

impl Readable {
    /// `shared`: each shared path's name, its sharing, and whether it is a directory marker.
    pub fn new(user: &str, shared: impl IntoIterator<Item = (String, Sharing, bool)>) -> Readable {
        let mut ranges: Vec<(String, String)> = vec![];
        for (name, sharing, dir) in shared {
            if !sharing.can_read(user) {
                continue;
            }
            if dir {
                // Everything under `d/`: from "d/" up to "d0" ('0' follows '/').
                ranges.push((format!("{name}/"), format!("{name}0")));
            }
            ranges.push((name.clone(), format!("{name}\u{0}")));
        }
        ranges.sort();
        let mut merged: Vec<(String, String)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => {
                    if end > last.1 {
                        last.1 = end;
                    }
                }
                _ => merged.push((start, end)),
            }
        }
        Readable { ranges: merged }
    }

    pub fn position(&self, name: &str) -> Position<'_> {
        let i = self.ranges.partition_point(|(_, end)| end.as_str() <= name);
        match self.ranges.get(i) {
            None => Position::After,
            Some((start, _)) if start.as_str() <= name => Position::Inside,
            Some((start, _)) => Position::Before(start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(s: &str) -> Sharing {
        Sharing::parse(s).unwrap()
    }

    #[test]
    fn the_rule() {
        assert_eq!(decide("a", "a", None, None), Some(Access::owner()));
        assert_eq!(decide("b", "a", None, None), None);
        let r = decide("b", "a", Some(&sh("read=b")), None).unwrap();
        assert!(!r.owner && !r.write && r.shared_by.is_none());
        assert!(decide("b", "a", Some(&sh("write=b")), None).unwrap().write);
        assert!(decide("b", "a", Some(&sh("read=*")), None).is_some());
        assert_eq!(decide("b", "a", Some(&sh("read=c")), None), None);
        // Own sharing that says nothing of b leaves the directory's.
        let d = sh("read=b");
        let r = decide("b", "a", Some(&sh("read=c")), Some(("c/d", &d))).unwrap();
        assert_eq!(r.shared_by.as_deref(), Some("c/d"));
    }

    #[test]
    fn only_directories_are_inherited_from() {
        let dirs = SharedDirs::new(
            "c",
            [("d".to_string(), sh("read=b")), ("d/e".to_string(), sh("read=x"))],
        );
        assert_eq!(dirs.nearest("d/f").unwrap().0, "c/d");
        assert_eq!(dirs.nearest("d/e/f").unwrap().0, "c/d/e", "the nearest wins");
        assert!(dirs.decide("b", "a", "d/e/f", None).is_none(), "d/e says x, not b");
        assert!(dirs.decide("b", "a", "d/f/g", None).is_some());
        assert!(dirs.nearest("d").is_none(), "a directory does not inherit from itself");
        assert!(dirs.nearest("dx/f").is_none());
    }

    #[test]
    fn readable_ranges_cover_what_the_rule_allows_and_skip_the_rest() {
        let r = Readable::new(
            "b",
            [
                ("d".to_string(), sh("read=b"), true),
                ("d/e".to_string(), sh("read=x"), true),
                ("f".to_string(), sh("read=b"), false),
                ("g".to_string(), sh("read=x"), false),
                ("d/sub/x".to_string(), sh("read=b"), false),
            ],
        );
        assert_eq!(r.position("a"), Position::Before("d"));
        assert_eq!(r.position("d"), Position::Inside, "the shared marker itself");
        assert_eq!(
            r.position("d/e/deep"),
            Position::Inside,
            "inside; the rule then decides"
        );
        assert_eq!(r.position("d.x"), Position::Before("d/"), "not under d/");
        assert_eq!(r.position("d0"), Position::Before("f"));
        assert_eq!(r.position("f"), Position::Inside);
        assert_eq!(
            r.position("f/under"),
            Position::After,
            "a shared file shares nothing under it"
        );
        assert_eq!(r.position("g"), Position::After);
        assert!(Readable::new("b", []).position("") == Position::After);
    }
}
