//! Paging through one directory of a container, trusting nothing the server says about it:
//! every name must lie under the prefix asked, a full page must move the marker on to a name
//! not used as a marker before (else a server could page forever), a page holds at most what
//! was asked, and a directory at most [`MAX_ENTRIES`] names. Any breach is EIO naming the
//! listing, never a panic, a hang or unbounded memory.

use crate::client::{Listed, Storage};
use crate::fs::error::{FsError, FsResult};
use std::collections::HashSet;

/// Names one directory may hold (each costs the mount about 2 KB while it is listed).
pub const MAX_ENTRIES: usize = 1 << 20;

/// Calls `each(name below prefix, entry)` for every child of `prefix` (empty or ending in
/// `/`), a page of `page` names at a time.
pub async fn each_child<S: Storage>(
    storage: &S,
    container: &str,
    prefix: &str,
    page: usize,
    mut each: impl FnMut(&str, &Listed),
) -> FsResult<()> {
    let bad = |why: String| FsError::new(libc::EIO, format!("GET {container}?prefix={prefix:?}: {why}"));
    let mut marker = String::new();
    let mut markers = HashSet::new();
    let mut count = 0usize;
    loop {
        let items = storage.list(container, prefix, &marker, page).await?;
        if items.len() > page {
            return Err(bad(format!("{} names in a page of {page}", items.len())));
        }
        count += items.len();
        if count > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} names in one directory")));
        }
        for e in &items {
            let full = full_name(e);
            let Some(rest) = full.strip_prefix(prefix) else {
                return Err(bad(format!(
                    "the server listed {full:?}, which is not under the prefix"
                )));
            };
            each(rest, e);
        }
        if items.len() < page {
            return Ok(());
        }
        let last = full_name(items.last().expect("a full page")).to_string();
        if last == marker || !markers.insert(last.clone()) {
            return Err(bad(format!("the listing does not advance past {last:?}")));
        }
        marker = last;
    }
}

fn full_name(e: &Listed) -> &str {
    match e {
        Listed::Object(o) => &o.name,
        Listed::Prefix(p) => p,
    }
}
