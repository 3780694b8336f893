//! The one permission rule: what a user may do with an object of an account. Every route
//! that reads or writes another account's data (GET, HEAD, version reads, listings, copies,
//! recursive copies) asks it, through [`crate::store::Store::access`] or, for the rows of a
//! listing, [`decide`] with the container's shared directories at hand.
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
}
