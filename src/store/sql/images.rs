//! The registered images: one row per path whose current version carries image metadata, by
//! owner and name, kept in the transaction that changes which version is current. With the
//! [`super::grants`] of each path, the image list a user sees — their own, the shared and the
//! public ones — costs what it returns (it read every image attribute on the server).

use super::db::{params, Db};
use crate::store::Result;

/// Version 6 (from 5), with the grants.
pub(super) const SCHEMA_6: &str = r#"
CREATE TABLE images (path INTEGER PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL);
CREATE INDEX images_owner ON images (account, name);
CREATE INDEX images_name ON images (name);
"#;

pub(super) fn migrate_to_6(c: &Db) -> Result<()> {
    c.execute_batch(SCHEMA_6)?;
    c.execute_batch(
        "INSERT INTO images (path, account, name)
             SELECT p.id, k.account, a.value FROM paths p JOIN containers k ON k.id = p.container
             JOIN attrs a ON a.version = p.latest AND a.domain = 'plankton' AND a.key = 'name'",
    )?;
    Ok(())
}

/// Version `vid` becomes current (`sign` 1) or stops being so (`sign` -1).
pub(super) fn current_changes(c: &Db, vid: i64, sign: i64) -> Result<()> {
    if sign > 0 {
        c.prepare_cached(
            "INSERT INTO images (path, account, name)
                 SELECT v.path, k.account, a.value FROM versions v JOIN paths p ON p.id = v.path
                 JOIN containers k ON k.id = p.container
                 JOIN attrs a ON a.version = v.id AND a.domain = 'plankton' AND a.key = 'name'
                 WHERE v.id = ?1
             ON CONFLICT (path) DO UPDATE SET account = excluded.account, name = excluded.name",
        )?
        .execute([vid])?;
    } else {
        c.prepare_cached("DELETE FROM images WHERE path = (SELECT path FROM versions WHERE id = ?1)")?
            .execute(params![vid])?;
    }
    Ok(())
}

/// The paths of the images `viewer` may see (owns, or shared with them or everyone), named
/// `name` if given, as an SQL subquery over `?1` (the viewer) and `?2` (the name).
pub(super) fn visible_paths(named: bool) -> String {
    let name = if named { " AND i.name = ?2" } else { "" };
    let reader = super::grants::reader_is(1);
    format!(
        "SELECT i.path FROM images i WHERE i.account = ?1{name}
         UNION SELECT i.path FROM grants g JOIN images i ON i.path = g.path WHERE {reader}{name}"
    )
}
