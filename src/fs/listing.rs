//! Paging through one directory of a container, trusting nothing the server says about it:
//! every name must lie under the prefix asked, a full page must move the marker on to a name
//! not used as a marker before (else a server could page forever), a page holds at most what
//! was asked, and a directory at most [`MAX_ENTRIES`] names. Any breach is EIO naming the
//! listing, never a panic, a hang or unbounded memory.

use crate::client::{Listed, Storage};
use crate::fs::error::{FsError, FsResult};
use std::collections::HashSet;

/// Names one directory may hold. Pages are read one at a time, so this bounds the time a
/// server can keep a listing going with ever new names, not memory (what each page leaves
/// behind is one marker, its last name).
pub const MAX_ENTRIES: usize = 1 << 24;

/// The pages of one directory's listing, in order.
pub struct Pages {
    container: String,
    prefix: String,
    page: usize,
    marker: String,
    markers: HashSet<String>,
    count: usize,
    done: bool,
}

impl Pages {
    /// The children of `prefix` (empty or ending in `/`), `page` names at a time.
    pub fn new(container: &str, prefix: &str, page: usize) -> Pages {
        Pages {
            container: container.to_string(),
            prefix: prefix.to_string(),
            page,
            marker: String::new(),
            markers: HashSet::new(),
            count: 0,
            done: false,
        }
    }

    /// Whether the last page was read.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The name of `e` below the prefix (checked by [`Pages::next`]; empty for anything else).
    pub fn rest<'a>(&self, e: &'a Listed) -> &'a str {
        full_name(e).get(self.prefix.len()..).unwrap_or("")
    }

    /// The next page, checked; empty once [`Pages::done`].
    pub async fn next<S: Storage>(&mut self, storage: &S) -> FsResult<Vec<Listed>> {
        if self.done {
            return Ok(vec![]);
        }
        let (container, prefix) = (&self.container, &self.prefix);
        let bad = |why: String| FsError::new(libc::EIO, format!("GET {container}?prefix={prefix:?}: {why}"));
        let items = storage.list(container, prefix, &self.marker, self.page).await?;
        if items.len() > self.page {
            return Err(bad(format!("{} names in a page of {}", items.len(), self.page)));
        }
        self.count += items.len();
        if self.count > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} names in one directory")));
        }
        if let Some(e) = items.iter().find(|e| !full_name(e).starts_with(prefix.as_str())) {
            return Err(bad(format!(
                "the server listed {:?}, which is not under the prefix",
                full_name(e)
            )));
        }
        if items.len() < self.page {
            self.done = true;
            return Ok(items);
        }
        let last = full_name(items.last().expect("a full page")).to_string();
        if last == self.marker || !self.markers.insert(last.clone()) {
            return Err(bad(format!("the listing does not advance past {last:?}")));
        }
        self.marker = last;
        Ok(items)
    }
}

fn full_name(e: &Listed) -> &str {
    match e {
        Listed::Object(o) => &o.name,
        Listed::Prefix(p) => p,
    }
}
