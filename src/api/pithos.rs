//! Pithos+ object storage wire shapes (spec/pithos.md): header names, JSON listings, hashmaps,
//! version lists, the sharing grammar, metadata key normalization, header value encoding and
//! the byte-range grammars.

use crate::api::hashing::BlockHash;
use crate::api::lenient;
use crate::api::timefmt::UnixTime;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// The largest object a single request may create (Swift's and the original's limit).
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;
/// The largest hashmap body: a 5 TiB object's hashmap is about 90 MB of JSON.
pub const MAX_HASHMAP_BODY: usize = 96 << 20;

pub const ACCOUNT_META: &str = "x-account-meta-";
pub const CONTAINER_META: &str = "x-container-meta-";
pub const OBJECT_META: &str = "x-object-meta-";
pub const ACCOUNT_GROUP: &str = "x-account-group-";

pub const X_ACCOUNT_CONTAINER_COUNT: &str = "x-account-container-count";
pub const X_ACCOUNT_BYTES_USED: &str = "x-account-bytes-used";
pub const X_ACCOUNT_POLICY_QUOTA: &str = "x-account-policy-quota";
pub const X_CONTAINER_OBJECT_COUNT: &str = "x-container-object-count";
pub const X_CONTAINER_BYTES_USED: &str = "x-container-bytes-used";
pub const X_CONTAINER_BLOCK_SIZE: &str = "x-container-block-size";
pub const X_CONTAINER_BLOCK_HASH: &str = "x-container-block-hash";
pub const X_CONTAINER_OBJECT_META: &str = "x-container-object-meta";
pub const X_CONTAINER_POLICY_VERSIONING: &str = "x-container-policy-versioning";
pub const X_CONTAINER_POLICY_QUOTA: &str = "x-container-policy-quota";
pub const X_CONTAINER_POLICY_PROJECT: &str = "x-container-policy-project";
pub const X_OBJECT_HASH: &str = "x-object-hash";
pub const X_OBJECT_UUID: &str = "x-object-uuid";
pub const X_OBJECT_VERSION: &str = "x-object-version";
pub const X_OBJECT_VERSION_TIMESTAMP: &str = "x-object-version-timestamp";
pub const X_OBJECT_MODIFIED_BY: &str = "x-object-modified-by";
pub const X_OBJECT_SHARING: &str = "x-object-sharing";
pub const X_OBJECT_SHARED_BY: &str = "x-object-shared-by";
pub const X_OBJECT_ALLOWED_TO: &str = "x-object-allowed-to";
pub const X_OBJECT_PUBLIC: &str = "x-object-public";
pub const X_OBJECT_BYTES: &str = "x-object-bytes";
pub const X_OBJECT_MANIFEST: &str = "x-object-manifest";
pub const X_COPY_FROM: &str = "x-copy-from";
pub const X_MOVE_FROM: &str = "x-move-from";
pub const X_SOURCE_ACCOUNT: &str = "x-source-account";
pub const X_SOURCE_VERSION: &str = "x-source-version";
pub const X_SOURCE_OBJECT: &str = "x-source-object";
pub const DESTINATION: &str = "destination";
pub const DESTINATION_ACCOUNT: &str = "destination-account";
pub const X_AUTH_TOKEN: &str = "x-auth-token";
pub const AVAILABLE: &str = "available";

pub const DIRECTORY_TYPES: [&str; 2] = ["application/directory", "application/folder"];
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The quota the original reports for an account without a limit (Astakos' infinity).
pub const UNLIMITED_QUOTA: u64 = i64::MAX as u64;

/// Longest object name (bytes).
pub const MAX_OBJECT_NAME: usize = 1024;
/// Longest container name (bytes).
pub const MAX_CONTAINER_NAME: usize = 256;
/// Most entries one listing reply holds.
pub const MAX_LISTING: usize = 10_000;
/// Metadata limits (`PITHOS_RESOURCE_MAX_METADATA` and friends).
pub const MAX_META_KEY: usize = 128;
pub const MAX_META_VALUE: usize = 256;
pub const MAX_META_ITEMS: usize = 32;
pub const MAX_META_HEADERS: usize = 90;

pub fn is_directory_type(content_type: &str) -> bool {
    DIRECTORY_TYPES.iter().any(|d| content_type.starts_with(d))
}

/// One object in a JSON container listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ObjectEntry {
    pub name: String,
    pub bytes: u64,
    pub content_type: String,
    /// Stored MD5, or empty.
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub x_object_hash: String,
    #[serde(default)]
    pub x_object_uuid: String,
    #[serde(default)]
    pub x_object_version: u64,
    #[serde(default)]
    pub x_object_version_timestamp: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub x_object_modified_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_object_sharing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_object_allowed_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_object_public: Option<String>,
    /// The original's flags: blocks all present (always 1 here) and when its backend last
    /// checked the map (never here).
    #[serde(default = "one")]
    pub available: u8,
    #[serde(default)]
    pub map_check_timestamp: Option<f64>,
}

fn one() -> u8 {
    1
}

/// An entry of a JSON container listing: an object or a rolled-up prefix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ListingEntry {
    Subdir { subdir: String },
    Object(Box<ObjectEntry>),
}

/// One entry of a JSON container listing as the client reads it: an object, or a rolled-up
/// prefix when `subdir` is set. One flat struct, since serde's untagged enums buffer every
/// entry before trying each variant (a third of the parse time of a 10k listing); fields a
/// client does not use are skipped, and those it reads are read leniently (numbers or
/// strings).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ListingRow {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub subdir: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::u64")]
    pub bytes: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub content_type: String,
    #[serde(deserialize_with = "lenient::string")]
    pub x_object_hash: String,
    #[serde(deserialize_with = "lenient::u64")]
    pub x_object_version: u64,
    pub x_object_version_timestamp: UnixTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ContainerPolicy {
    #[serde(deserialize_with = "lenient::string")]
    pub quota: String,
    #[serde(deserialize_with = "lenient::string")]
    pub versioning: String,
    #[serde(deserialize_with = "lenient::string")]
    pub project: String,
}

/// One container in a JSON account listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ContainerEntry {
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::u64")]
    pub count: u64,
    #[serde(deserialize_with = "lenient::u64")]
    pub bytes: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub last_modified: String,
    pub x_container_policy: ContainerPolicy,
}

/// `GET ?hashmap` reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hashmap {
    #[serde(deserialize_with = "lenient::u64")]
    pub block_size: u64,
    pub block_hash: String,
    #[serde(deserialize_with = "lenient::u64")]
    pub bytes: u64,
    pub hashes: Vec<BlockHash>,
}

/// `PUT ?hashmap` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HashmapPut {
    pub bytes: u64,
    pub hashes: Vec<BlockHash>,
}

/// `GET ?version=list` reply: `{"versions": [[id, 1796151221.306357], ...]}` (the original
/// writes the time as a number; the spec shows a string, which reads too).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionList {
    pub versions: Vec<(u64, UnixTime)>,
}

/// `X-Object-Sharing`: who may read and who may write.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Sharing {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SharingError {
    #[error("Bad X-Object-Sharing header: unknown permission '{0}'")]
    UnknownPermission(String),
    #[error("Bad X-Object-Sharing header: empty member in '{0}'")]
    EmptyMember(String),
    #[error("Bad X-Object-Sharing header: invalid member '{0}'")]
    InvalidMember(String),
}

/// Whether `m` can stand as one member of a sharing list (a user, a group, `*`): not empty,
/// at most 256 bytes, and none of what separates members or lists (`,` `;` `=`), no spaces or
/// control characters. Whatever builds a sharing string from a client's words checks this
/// first, or a member id could carry a clause of its own (`x;write=*`).
pub fn valid_member(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 256
        && !m
            .chars()
            .any(|c| matches!(c, ',' | ';' | '=') || c.is_whitespace() || c.is_control())
}

impl Sharing {
    /// Parses `read=a,b; write=c`. An empty string is "no permissions".
    pub fn parse(s: &str) -> Result<Sharing, SharingError> {
        let mut out = Sharing::default();
        for part in s.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (kind, list) = part
                .split_once('=')
                .ok_or_else(|| SharingError::UnknownPermission(part.to_string()))?;
            let target = match kind.trim().to_ascii_lowercase().as_str() {
                "read" => &mut out.read,
                "write" => &mut out.write,
                other => return Err(SharingError::UnknownPermission(other.to_string())),
            };
            for m in list.split(',') {
                let m = m.trim().to_lowercase();
                if m.is_empty() {
                    return Err(SharingError::EmptyMember(part.to_string()));
                }
                if !valid_member(&m) {
                    return Err(SharingError::InvalidMember(m));
                }
                if !target.contains(&m) {
                    target.push(m);
                }
            }
        }
        // A member with write access is only listed under write.
        let write = out.write.clone();
        out.read.retain(|m| !write.contains(m));
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }

    pub fn is_public(&self) -> bool {
        self.read.iter().any(|m| m == "*")
    }

    pub fn can_read(&self, user: &str) -> bool {
        self.can_write(user) || self.read.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(user))
    }

    pub fn can_write(&self, user: &str) -> bool {
        self.write.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(user))
    }
}

impl std::fmt::Display for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = vec![];
        if !self.read.is_empty() {
            parts.push(format!("read={}", self.read.join(",")));
        }
        if !self.write.is_empty() {
            parts.push(format!("write={}", self.write.join(",")));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Normalizes a user metadata key (the part after `X-Object-Meta-`): `_` becomes `-` and every
/// dash-separated word is capitalized (`foo_bar` → `Foo-Bar`).
pub fn normalize_meta_key(key: &str) -> String {
    key.replace('_', "-")
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c.flat_map(|x| x.to_lowercase())).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join("-")
}

/// Characters kept as they are in reply header values (spec §3.3).
const HEADER_VALUE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'=')
    .remove(b',')
    .remove(b':')
    .remove(b'@')
    .remove(b';')
    .remove(b' ')
    .remove(b'"')
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// Percent-encodes a reply header value as Pithos does.
pub fn encode_header_value(v: &str) -> String {
    utf8_percent_encode(v, HEADER_VALUE_SET).to_string()
}

/// Decodes a request header value that contains `%`; `None` if the result is not UTF-8.
pub fn decode_header_value(v: &str) -> Option<String> {
    if !v.contains('%') {
        return Some(v.to_string());
    }
    percent_decode_str(v).decode_utf8().ok().map(|c| c.into_owned())
}

/// Percent-encodes a path for a URL (keeps `/`).
pub fn encode_path(p: &str) -> String {
    const PATH: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'_')
        .remove(b'.')
        .remove(b'-')
        .remove(b'~');
    utf8_percent_encode(p, PATH).to_string()
}

/// One `Range: bytes=` item, before it is resolved against a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b` or `a-`
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes
    Suffix(u64),
}

/// Parses `bytes=0-9,20-` into items. `None` when it is not a byte range header at all.
pub fn parse_range_header(v: &str) -> Option<Vec<ByteRange>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let mut out = vec![];
    for item in spec.split(',') {
        let item = item.trim();
        let (a, b) = item.split_once('-')?;
        if a.is_empty() {
            out.push(ByteRange::Suffix(b.parse().ok()?));
        } else {
            let first = a.parse().ok()?;
            let last = if b.is_empty() { None } else { Some(b.parse().ok()?) };
            if let Some(l) = last {
                if l < first {
                    return None;
                }
            }
            out.push(ByteRange::From { first, last });
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

impl ByteRange {
    /// The inclusive `(first, last)` within an object of `size` bytes, or `None` when the item
    /// is not satisfiable.
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        match *self {
            ByteRange::From { first, last } => {
                if first >= size {
                    return None;
                }
                Some((first, last.map_or(size - 1, |l| l.min(size - 1))))
            }
            ByteRange::Suffix(n) => {
                if n == 0 || size == 0 {
                    return None;
                }
                Some((size.saturating_sub(n), size - 1))
            }
        }
    }
}

/// A `Content-Range` of an object data POST (spec §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// `None` = append at the end (`bytes */*`).
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub total: Option<u64>,
}

/// Parses `bytes a-b/total`, `bytes a-b/*`, `bytes a-/*`, `bytes */*`.
pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let spec = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = spec.split_once('/')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    if range == "*" {
        return Some(ContentRange {
            first: None,
            last: None,
            total,
        });
    }
    let (a, b) = range.split_once('-')?;
    let first = Some(a.parse().ok()?);
    let last = if b.is_empty() { None } else { Some(b.parse().ok()?) };
    if let (Some(f), Some(l)) = (first, last) {
        if l < f {
            return None;
        }
    }
    Some(ContentRange { first, last, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharing_grammar() {
        let s = Sharing::parse("read=A,b ; write=b,C").unwrap();
        assert_eq!(s.read, vec!["a"]);
        assert_eq!(s.write, vec!["b", "c"]);
        assert_eq!(s.to_string(), "read=a; write=b,c");
        assert!(Sharing::parse("").unwrap().is_empty());
        assert!(Sharing::parse("read=acc,*").unwrap().is_public());
        assert!(matches!(
            Sharing::parse("own=x"),
            Err(SharingError::UnknownPermission(_))
        ));
        assert!(Sharing::parse("read=a,,b").is_err());
        assert!(Sharing::parse("read=a=b").is_err());
        assert!(valid_member("0b5c-uuid") && valid_member("bob@example.org") && valid_member("*"));
        for bad in ["x;write=*", "a,b", "a b", "", "a\nb", &"x".repeat(257)] {
            assert!(!valid_member(bad), "{bad:?}");
        }
        assert!(s.can_read("B") && s.can_read("a") && !s.can_read("z") && !s.can_write("a"));
    }

    #[test]
    fn meta_keys() {
        assert_eq!(normalize_meta_key("foo_bar"), "Foo-Bar");
        assert_eq!(normalize_meta_key("FOO-bAr"), "Foo-Bar");
    }

    #[test]
    fn header_values() {
        assert_eq!(encode_header_value("My Image/é"), "My Image/%C3%A9");
        assert_eq!(decode_header_value("My%20Image").unwrap(), "My Image");
        assert_eq!(decode_header_value("%FF"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range_header("bytes=0-9,20-,-5").unwrap(),
            vec![
                ByteRange::From {
                    first: 0,
                    last: Some(9)
                },
                ByteRange::From { first: 20, last: None },
                ByteRange::Suffix(5)
            ]
        );
        assert_eq!(parse_range_header("bytes=9-0"), None);
        assert_eq!(parse_range_header("items=0-1"), None);
        assert_eq!(
            ByteRange::From {
                first: 5,
                last: Some(100)
            }
            .resolve(10),
            Some((5, 9))
        );
        assert_eq!(ByteRange::From { first: 10, last: None }.resolve(10), None);
        assert_eq!(ByteRange::Suffix(3).resolve(10), Some((7, 9)));
        assert_eq!(
            parse_content_range("bytes */*").unwrap(),
            ContentRange {
                first: None,
                last: None,
                total: None
            }
        );
        assert_eq!(
            parse_content_range("bytes 3-5/10").unwrap(),
            ContentRange {
                first: Some(3),
                last: Some(5),
                total: Some(10)
            }
        );
        assert_eq!(parse_content_range("bytes 5-3/*"), None);
    }

    #[test]
    fn listing_shapes() {
        let j = r#"[{"subdir":"a/"},{"name":"a.txt","bytes":2,"content_type":"text/plain","hash":"","x_object_hash":"h","x_object_uuid":"u","x_object_version":4,"x_object_version_timestamp":1.0,"last_modified":"x","x_object_modified_by":"m"}]"#;
        let v: Vec<ListingEntry> = serde_json::from_str(j).unwrap();
        assert!(matches!(&v[0], ListingEntry::Subdir { subdir } if subdir == "a/"));
        assert!(matches!(&v[1], ListingEntry::Object(o) if o.bytes == 2));
        let rows: Vec<ListingRow> = serde_json::from_str(j).unwrap();
        assert_eq!(rows[0].subdir.as_deref(), Some("a/"));
        assert_eq!((rows[1].subdir.as_deref(), rows[1].bytes), (None, 2));
        // What the server writes, the client reads.
        let written = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Vec<ListingRow>>(&written).unwrap(), rows);
        let vl: VersionList = serde_json::from_str(r#"{"versions": [[1, "1322813441.565891"]]}"#).unwrap();
        assert_eq!(vl.versions[0], (1, UnixTime(Some(1_322_813_441_565_891))));
        // The original's shapes: numbers for times, fields the spec does not list.
        let j = r#"[{"available": 1, "hash": "", "name": "a.txt", "bytes": 6, "x_object_version_timestamp": 1796155115.377682, "x_object_uuid": "u", "last_modified": "2026-12-01T19:58:35.377682+00:00", "content_type": "application/octet-stream", "x_object_hash": "h", "map_check_timestamp": null, "x_object_version": 4, "x_object_modified_by": "m"}, {"subdir": "e/"}]"#;
        let rows: Vec<ListingRow> = serde_json::from_str(j).unwrap();
        assert_eq!(
            rows[0].x_object_version_timestamp,
            UnixTime(Some(1_796_155_115_377_682))
        );
        assert_eq!((rows[0].bytes, rows[0].x_object_version), (6, 4));
        assert_eq!(rows[1].subdir.as_deref(), Some("e/"));
        let vl: VersionList = serde_json::from_str(r#"{"versions": [[3, 1796155115.35279]]}"#).unwrap();
        assert_eq!(vl.versions[0], (3, UnixTime(Some(1_796_155_115_352_790))));
        let c: Vec<ContainerEntry> = serde_json::from_str(r#"[{"count": 3, "last_modified": "2026-12-01T20:10:05.084261+00:00", "bytes": 8, "name": "pithos", "x_container_policy": {"project": "p", "quota": "0", "versioning": "auto"}}, {"name": "bare"}]"#).unwrap();
        assert_eq!(
            (c[0].name.as_str(), c[0].bytes, c[1].name.as_str()),
            ("pithos", 8, "bare")
        );
    }
}
