//! Who each shared path is shared with: one row per (member, path), kept with `paths.sharing`
//! wherever it changes, so "what is shared with this user" is a range of an index — the size
//! of the answer, not of everything shared on the server (the image list and the accounts
//! sharing with a user were scans of every shared path).
//!
//! Members are stored lowercased, as [`Sharing::can_read`] compares them; `*` is everyone.
//! Readers get the union of the read and write lists (a writer may read).

use super::db::{params, Db};
use crate::api::pithos::Sharing;
use crate::store::Result;
use std::collections::BTreeSet;

/// Version 6 (from 5), with the image index ([`super::images`]).
pub(super) const SCHEMA_6: &str = r#"
CREATE TABLE grants (member TEXT NOT NULL, path INTEGER NOT NULL, PRIMARY KEY (member, path)) WITHOUT ROWID;
CREATE INDEX grants_path ON grants (path);
"#;

pub(super) fn migrate_to_6(c: &Db) -> Result<()> {
    c.execute_batch(SCHEMA_6)?;
    let mut st = c.prepare("SELECT id, sharing FROM paths WHERE sharing IS NOT NULL AND latest IS NOT NULL")?;
    let rows: Vec<(i64, String)> = st
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_>>()?;
    for (pid, s) in rows {
        set(c, pid, Sharing::parse(&s).ok().as_ref())?;
    }
    Ok(())
}

/// The readers of a sharing, as stored.
pub(super) fn members(s: &Sharing) -> BTreeSet<String> {
    s.read.iter().chain(&s.write).map(|m| m.to_lowercase()).collect()
}

/// The path's sharing is now `sharing` (`None` or empty: none).
pub(super) fn set(c: &Db, pid: i64, sharing: Option<&Sharing>) -> Result<()> {
    c.prepare_cached("DELETE FROM grants WHERE path = ?1")?.execute([pid])?;
    if let Some(s) = sharing {
        let mut ins = c.prepare_cached("INSERT INTO grants (member, path) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
        for m in members(s) {
            ins.execute(params![m, pid])?;
        }
    }
    Ok(())
}

/// The SQL condition "`g.member` names `?n`, or everyone", for a query joining `grants g`.
pub(super) fn reader_is(n: usize) -> String {
    format!("g.member IN (lower(?{n}), '*')")
}
