//! Tokens: several per user, each with an expiry, stored as sha256 hashes only (the database
//! never holds a usable secret). Issuing a token can keep the user's other tokens (a mount
//! switches to the new one before the old one expires) or revoke them (rotation after a leak).

use super::db::{params, Db, OptionalExtension};
use crate::api::timefmt::{now_micros, Micros};
use crate::store::{Result, Session, StoreError, TokenCheck, User};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Version 4 (from 3): the tokens table; each user's token becomes its first row.
/// (`users.token_hash` stays for older schema's sake and is never consulted.)
pub(super) const SCHEMA_4: &str = r#"
CREATE TABLE tokens (hash BLOB PRIMARY KEY, user TEXT NOT NULL, issued INTEGER NOT NULL, expires INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX tokens_user ON tokens (user);
"#;

pub(super) fn migrate_to_4(c: &Db) -> Result<()> {
    c.execute_batch(SCHEMA_4)?;
    // Tokens from before had no expiry: they get the default from now.
    let expires = now_micros() + micros(crate::store::DEFAULT_TOKEN_LIFETIME);
    c.execute(
        "INSERT INTO tokens (hash, user, issued, expires) SELECT token_hash, uuid, created, ?1 FROM users",
        [expires],
    )?;
    Ok(())
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)
}

pub(super) fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new secret: 192 random bits, hex.
pub(super) fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// Adds a token for `user`; with `revoke_others`, every other token of the user stops working.
pub(super) fn issue(c: &Db, user: &str, lifetime: Duration, revoke_others: bool) -> Result<(String, Micros)> {
    if lifetime.is_zero() {
        return Err(StoreError::Invalid(
            "a token's lifetime must be at least a second".into(),
        ));
    }
    if revoke_others {
        revoke(c, user)?;
    }
    let secret = new_secret();
    let now = c.now();
    let expires = now.saturating_add(micros(lifetime));
    c.execute(
        "INSERT INTO tokens (hash, \"user\", issued, expires) VALUES (?1, ?2, ?3, ?4)",
        params![hash(&secret), user, now, expires],
    )?;
    Ok((secret, expires))
}

/// Every token of `user` stops working; returns how many were live.
pub(super) fn revoke(c: &Db, user: &str) -> Result<u64> {
    let live: i64 = c.query_row(
        "SELECT COUNT(*) FROM tokens WHERE \"user\" = ?1 AND expires > ?2",
        params![user, c.now()],
        |r| r.get(0),
    )?;
    c.execute("DELETE FROM tokens WHERE \"user\" = ?1", [user])?;
    // (the old column must not keep a hash that once was a token)
    c.execute(
        "UPDATE users SET token_hash = ?1 WHERE uuid = ?2",
        params![rand::random::<[u8; 32]>().to_vec(), user],
    )?;
    Ok(live as u64)
}

pub(super) fn check(c: &Db, token: &str) -> Result<TokenCheck> {
    let h = hash(token);
    let found: Option<(String, String, Vec<u8>, i64)> = c
        .prepare_cached(
            "SELECT u.uuid, u.name, t.hash, t.expires FROM tokens t JOIN users u ON u.uuid = t.\"user\" WHERE t.hash = ?1",
        )?
        .query_row([&h], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    use subtle::ConstantTimeEq;
    Ok(match found {
        Some((uuid, name, stored, expires)) if bool::from(stored.ct_eq(&h)) => {
            if expires > c.now() {
                TokenCheck::Valid(Session {
                    user: User { uuid, name },
                    expires,
                })
            } else {
                TokenCheck::Expired
            }
        }
        _ => TokenCheck::Unknown,
    })
}

/// Tokens a day past their expiry are forgotten (until then they answer "expired").
pub(super) fn forget_expired(c: &Db) -> Result<u64> {
    let day = 86_400_000_000i64;
    Ok(c.execute("DELETE FROM tokens WHERE expires < ?1", [c.now() - day])? as u64)
}
