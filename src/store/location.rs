//! Where an engine keeps its metadata and its blocks, as the command line names them (a
//! contract scripts outside the project rely on):
//!
//! * `--meta sqlite:DIR` — the metadata database `DIR/meta.db`; `--meta
//!   postgres://USER[:PASS]@HOST:PORT/DB[?options=-c search_path=SCHEMA]` — PostgreSQL;
//! * `--blocks dir:PATH` — block files under `PATH`; `--blocks s3://BUCKET[/PREFIX]` — one
//!   object per block in an S3 bucket (endpoint and keys from the `AWS_*` environment);
//! * `--data DIR` — the single-machine shorthand for `--meta sqlite:DIR --blocks dir:DIR/blocks`.
//!
//! `--blocks` left out beside `--meta sqlite:DIR` (or `--data DIR`) means `dir:DIR/blocks`;
//! beside PostgreSQL it must be given (servers sharing a database share a block store).

use crate::store::s3::S3Location;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaLocation {
    /// The directory holding `meta.db`.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (password included: never displayed).
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlocksLocation {
    Dir(PathBuf),
    S3(S3Location),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    pub meta: MetaLocation,
    pub blocks: BlocksLocation,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    #[error("--data DIR is short for --meta sqlite:DIR --blocks dir:DIR/blocks: give --data or --meta, not both")]
    DataAndMeta,
    #[error("--meta {0:?}: expected sqlite:DIR or postgres://USER[:PASS]@HOST:PORT/DB")]
    BadMeta(String),
    #[error("--meta {0:?}: PostgreSQL metadata needs --blocks (dir:PATH or s3://BUCKET) shared by every server")]
    PostgresWithoutBlocks(String),
    #[error("--blocks {0:?}: expected dir:PATH or s3://BUCKET[/PREFIX]")]
    BadBlocks(String),
}

impl std::fmt::Display for MetaLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaLocation::Sqlite(d) => write!(f, "sqlite:{}", d.display()),
            MetaLocation::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl std::fmt::Display for BlocksLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlocksLocation::Dir(d) => write!(f, "dir:{}", d.display()),
            BlocksLocation::S3(l) => l.fmt(f),
        }
    }
}

impl MetaLocation {
    pub fn parse(s: &str) -> Result<MetaLocation, LocationError> {
        if let Some(dir) = s.strip_prefix("sqlite:") {
            if dir.is_empty() {
                return Err(LocationError::BadMeta(s.into()));
            }
            return Ok(MetaLocation::Sqlite(PathBuf::from(dir)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(MetaLocation::Postgres(s.to_string()));
        }
        Err(LocationError::BadMeta(redact(s)))
    }
}

/// A URL with any password taken out, for messages and logs.
pub fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &s[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &s[..scheme + 3], &userinfo[..colon], &s[at..]),
                None => s.to_string(),
            }
        }
        _ => s.to_string(),
    }
}

impl BlocksLocation {
    pub fn parse(s: &str) -> Result<BlocksLocation, LocationError> {
        if let Some(dir) = s.strip_prefix("dir:") {
            if dir.is_empty() {
                return Err(LocationError::BadBlocks(s.into()));
            }
            return Ok(BlocksLocation::Dir(PathBuf::from(dir)));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // S3's own rule for bucket names (3–63 of a-z 0-9 . -), so a typo fails here and
            // not at the first upload.
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
            let prefix = prefix.trim_matches('/');
            let prefix_ok = prefix
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
                || prefix.is_empty();
            if !bucket_ok || !prefix_ok {
                return Err(LocationError::BadBlocks(s.into()));
            }
            return Ok(BlocksLocation::S3(S3Location {
                bucket: bucket.into(),
                prefix: prefix.into(),
            }));
        }
        Err(LocationError::BadBlocks(s.into()))
    }
}

impl Storage {
    /// The storage the options name; `default_dir` is the data directory when none of them
    /// names the metadata.
    pub fn resolve(
        data: Option<&Path>,
        meta: Option<&str>,
        blocks: Option<&str>,
        default_dir: impl FnOnce() -> PathBuf,
    ) -> Result<Storage, LocationError> {
        let meta = match (data, meta) {
            (Some(_), Some(_)) => return Err(LocationError::DataAndMeta),
            (Some(d), None) => MetaLocation::Sqlite(d.to_path_buf()),
            (None, Some(m)) => MetaLocation::parse(m)?,
            (None, None) => MetaLocation::Sqlite(default_dir()),
        };
        let blocks = match blocks {
            Some(b) => BlocksLocation::parse(b)?,
            None => match &meta {
                MetaLocation::Sqlite(d) => BlocksLocation::Dir(d.join("blocks")),
                MetaLocation::Postgres(url) => return Err(LocationError::PostgresWithoutBlocks(redact(url))),
            },
        };
        Ok(Storage { meta, blocks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(data: Option<&str>, meta: Option<&str>, blocks: Option<&str>) -> Result<Storage, LocationError> {
        Storage::resolve(data.map(Path::new), meta, blocks, || {
            PathBuf::from("/home/u/.local/share/imgfs")
        })
    }

    #[test]
    fn the_command_line_contract() {
        let dir = |p: &str| BlocksLocation::Dir(PathBuf::from(p));
        let sqlite = |p: &str| MetaLocation::Sqlite(PathBuf::from(p));
        // --data DIR = --meta sqlite:DIR --blocks dir:DIR/blocks
        assert_eq!(
            resolve(Some("/srv/imgfs"), None, None).unwrap(),
            resolve(None, Some("sqlite:/srv/imgfs"), Some("dir:/srv/imgfs/blocks")).unwrap()
        );
        assert_eq!(
            resolve(None, Some("sqlite:/srv/m"), None).unwrap().blocks,
            dir("/srv/m/blocks")
        );
        assert_eq!(
            resolve(None, None, None).unwrap(),
            Storage {
                meta: sqlite("/home/u/.local/share/imgfs"),
                blocks: dir("/home/u/.local/share/imgfs/blocks")
            }
        );
        let s3 = resolve(Some("/srv/imgfs"), None, Some("s3://imgfs-blocks/site/a/")).unwrap();
        assert_eq!(
            s3.blocks,
            BlocksLocation::S3(S3Location {
                bucket: "imgfs-blocks".into(),
                prefix: "site/a".into()
            })
        );
        assert_eq!(s3.blocks.to_string(), "s3://imgfs-blocks/site/a");
        assert_eq!(
            resolve(None, None, Some("s3://bucket")).unwrap().blocks.to_string(),
            "s3://bucket"
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            resolve(Some("/a"), Some("sqlite:/b"), None),
            Err(LocationError::DataAndMeta)
        );
        assert!(matches!(
            resolve(None, Some("/srv/imgfs"), None),
            Err(LocationError::BadMeta(_))
        ));
        assert!(matches!(
            resolve(None, Some("sqlite:"), None),
            Err(LocationError::BadMeta(_))
        ));
        for b in [
            "/srv/blocks",
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://b_u",
            "s3://bucket/a/../b",
            "dir:",
        ] {
            assert!(
                matches!(resolve(None, None, Some(b)), Err(LocationError::BadBlocks(_))),
                "{b}"
            );
        }
        // A password never reaches a message.
        let url = "postgres://imgfs:s3cret@db:5432/imgfs";
        let e = resolve(None, Some(url), None).unwrap_err();
        assert_eq!(
            e,
            LocationError::PostgresWithoutBlocks("postgres://imgfs:***@db:5432/imgfs".into())
        );
        assert!(!e.to_string().contains("s3cret"));
        let pg = resolve(None, Some(url), Some("s3://bucket")).unwrap();
        assert_eq!(pg.meta, MetaLocation::Postgres(url.into()));
        assert_eq!(pg.meta.to_string(), "postgres://imgfs:***@db:5432/imgfs");
    }
}
