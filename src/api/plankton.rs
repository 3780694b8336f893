//! Plankton image registry wire shapes (spec/plankton.md): `x-image-meta-*` headers, their
//! key normalization, the allowed formats, and the list/detail JSON entries.

use crate::api::lenient;
use crate::api::pithos::encode_path;
use crate::api::timefmt::{image_date, Micros};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const IMAGE_META: &str = "x-image-meta-";
pub const PROPERTY: &str = "property_";

pub const DISK_FORMATS: [&str; 3] = ["diskdump", "extdump", "ntfsdump"];
pub const CONTAINER_FORMATS: [&str; 5] = ["aki", "ari", "ami", "bare", "ovf"];
pub const DEFAULT_DISK_FORMAT: &str = "diskdump";
pub const DEFAULT_CONTAINER_FORMAT: &str = "bare";

/// Registry limits: key and value length of one stored item, items per image.
pub const MAX_KEY: usize = 128 - "plankton".len() - "property:".len();
pub const MAX_VALUE: usize = 256;
pub const MAX_ITEMS: usize = 32;

/// Keys of the stored image domain (besides `property:<key>`).
pub mod stored {
    pub const NAME: &str = "name";
    pub const DISK_FORMAT: &str = "disk_format";
    pub const CONTAINER_FORMAT: &str = "container_format";
    pub const STATUS: &str = "status";
    pub const CREATED_AT: &str = "created_at";
    pub const PROPERTY_PREFIX: &str = "property:";
}

/// Normalizes an image header key or property key: lower case, punctuation → `_`.
pub fn normalize_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_punctuation() {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Image header values are percent-encoded like Python's `quote` (space → `%20`), which is
/// what kamaki decodes.
fn encode_value(v: &str) -> String {
    encode_path(v)
}

/// Python's `str(bool)`, which is what kamaki sends and expects.
pub fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// `true` in any case → true; anything else → false (as Plankton reads `is_public`).
pub fn parse_bool(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true")
}

/// An image as the registry reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub location: String,
    pub owner: String,
    pub size: u64,
    pub checksum: String,
    pub disk_format: String,
    pub container_format: String,
    pub status: String,
    pub is_public: bool,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub properties: BTreeMap<String, String>,
}

/// The `x-image-meta-*` headers of a register or update request, as kamaki 0.16 sends them:
/// `name` and every property key and value percent-encoded, other fields as given (a
/// location from [`location`] is already encoded).
pub fn request_headers(fields: &[(&str, &str)], properties: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| {
            let v = if *k == "name" { encode_value(v) } else { v.to_string() };
            (format!("{IMAGE_META}{k}"), v)
        })
        .collect();
    for (k, v) in properties {
        h.push((format!("{IMAGE_META}property-{}", encode_value(k)), encode_value(v)));
    }
    h
}

/// The headers that delete the properties of `current` that `wanted` does not have: a
/// property sent with an empty value is deleted. Register and update merge the properties
/// they are sent into the stored ones (the original Synnefo 0.20 does; spec/plankton.md §6,
/// §8), so a client that means "exactly these" sends these too.
pub fn removal_headers(current: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let wanted: std::collections::BTreeSet<String> = wanted.keys().map(|k| normalize_key(k)).collect();
    current
        .keys()
        .filter(|k| !wanted.contains(&normalize_key(k)))
        .map(|k| (format!("{IMAGE_META}property-{}", encode_value(k)), String::new()))
        .collect()
}

/// `pithos://<owner>/<container>/<path>`, each part percent-encoded.
pub fn location(owner: &str, container: &str, path: &str) -> String {
    format!(
        "pithos://{}/{}/{}",
        encode_path(owner),
        encode_path(container),
        encode_path(path)
    )
}

/// Splits a `pithos://acc/cont/path` location (decoded); `None` if it is malformed.
pub fn parse_location(loc: &str) -> Option<(String, String, String)> {
    let rest = loc.strip_prefix("pithos://")?;
    let mut it = rest.splitn(3, '/');
    let (a, c, p) = (it.next()?, it.next()?, it.next()?);
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let (a, c, p) = (dec(a)?, dec(c)?, dec(p)?);
    if a.is_empty() || c.is_empty() || p.is_empty() {
        return None;
    }
    Some((a, c, p))
}

impl Image {
    /// The reply headers of HEAD/POST/PUT (spec §4), names lower-case.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = vec![
            ("id", self.id.clone()),
            ("name", encode_value(&self.name)),
            ("location", self.location.clone()),
            ("owner", self.owner.clone()),
            ("size", self.size.to_string()),
            ("checksum", self.checksum.clone()),
            ("disk-format", self.disk_format.clone()),
            ("container-format", self.container_format.clone()),
            ("status", self.status.clone()),
            ("is-public", py_bool(self.is_public).to_string()),
            ("created-at", image_date(self.created_at)),
            ("updated-at", image_date(self.updated_at)),
            ("deleted-at", String::new()),
            // (Python's 0 for False, as the original writes it)
            ("is-snapshot", "0".to_string()),
            ("description", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{IMAGE_META}{k}"), v))
        .collect();
        for (k, v) in &self.properties {
            h.push((
                format!("{IMAGE_META}property-{}", encode_value(&k.replace('_', "-"))),
                encode_value(v),
            ));
        }
        h
    }

    /// The image of a HEAD/POST/PUT reply's headers (the inverse of [`Image::headers`]);
    /// `None` without an id.
    pub fn from_headers<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Option<Image> {
        let mut img = Image::default();
        let decode = |v: &str| crate::api::pithos::decode_header_value(v).unwrap_or_else(|| v.to_string());
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            let Some(field) = lower.strip_prefix(IMAGE_META) else {
                continue;
            };
            if let Some(key) = field.strip_prefix("property-") {
                img.properties.insert(normalize_key(&decode(key)), decode(value));
                continue;
            }
            match field {
                "id" => img.id = value.to_string(),
                "name" => img.name = decode(value),
                "location" => img.location = value.to_string(),
                "owner" => img.owner = value.to_string(),
                "size" => img.size = value.trim().parse().unwrap_or(0),
                "checksum" => img.checksum = value.to_string(),
                "disk-format" => img.disk_format = value.to_string(),
                "container-format" => img.container_format = value.to_string(),
                "status" => img.status = value.to_string(),
                "is-public" => img.is_public = parse_bool(value),
                "created-at" => img.created_at = crate::api::timefmt::parse_image_date(value).unwrap_or(0),
                "updated-at" => img.updated_at = crate::api::timefmt::parse_image_date(value).unwrap_or(0),
                _ => {}
            }
        }
        (!img.id.is_empty()).then_some(img)
    }

    pub fn short(&self) -> ImageShort {
        ImageShort {
            id: self.id.clone(),
            name: self.name.clone(),
            status: self.status.clone(),
            disk_format: self.disk_format.clone(),
            container_format: self.container_format.clone(),
            size: self.size,
        }
    }

    pub fn detail(&self) -> ImageDetail {
        ImageDetail {
            id: self.id.clone(),
            name: self.name.clone(),
            status: self.status.clone(),
            disk_format: self.disk_format.clone(),
            container_format: self.container_format.clone(),
            size: self.size,
            checksum: self.checksum.clone(),
            location: self.location.clone(),
            created_at: image_date(self.created_at),
            updated_at: image_date(self.updated_at),
            deleted_at: String::new(),
            is_public: self.is_public,
            owner: self.owner.clone(),
            properties: self.properties.clone(),
            is_snapshot: false,
            description: String::new(),
        }
    }
}

/// An entry of `GET /images/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageShort {
    pub id: String,
    pub name: String,
    pub status: String,
    pub disk_format: String,
    pub container_format: String,
    pub size: u64,
}

/// An entry of `GET /images/detail`. Read leniently (the original writes `is_snapshot` as
/// `0`/`1` and leaves out `description`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ImageDetail {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(deserialize_with = "lenient::string")]
    pub disk_format: String,
    #[serde(deserialize_with = "lenient::string")]
    pub container_format: String,
    #[serde(deserialize_with = "lenient::u64")]
    pub size: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub checksum: String,
    #[serde(deserialize_with = "lenient::string")]
    pub location: String,
    #[serde(deserialize_with = "lenient::string")]
    pub created_at: String,
    #[serde(deserialize_with = "lenient::string")]
    pub updated_at: String,
    #[serde(deserialize_with = "lenient::string")]
    pub deleted_at: String,
    #[serde(deserialize_with = "lenient::bool")]
    pub is_public: bool,
    #[serde(deserialize_with = "lenient::string")]
    pub owner: String,
    #[serde(deserialize_with = "lenient::string_map")]
    pub properties: BTreeMap<String, String>,
    /// Written as the original writes it, `0` or `1`.
    #[serde(deserialize_with = "lenient::bool", serialize_with = "bool_as_int")]
    pub is_snapshot: bool,
    /// Read if a server sends it; the original's list leaves it out, and so does this one's.
    #[serde(deserialize_with = "lenient::string", skip_serializing)]
    pub description: String,
}

fn bool_as_int<S: serde::Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*b))
}

impl From<ImageDetail> for Image {
    fn from(d: ImageDetail) -> Image {
        let date = |s: &str| crate::api::timefmt::parse_image_date(s).unwrap_or(0);
        Image {
            created_at: date(&d.created_at),
            updated_at: date(&d.updated_at),
            id: d.id,
            name: d.name,
            location: d.location,
            owner: d.owner,
            size: d.size,
            checksum: d.checksum,
            disk_format: d.disk_format,
            container_format: d.container_format,
            status: d.status,
            is_public: d.is_public,
            properties: d.properties,
        }
    }
}

/// `GET /images/ID/members`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Members {
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub member_id: String,
    #[serde(default)]
    pub can_share: bool,
}

/// `PUT /images/ID/members` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Memberships {
    pub memberships: Vec<Member>,
}

/// `GET /shared-images/MEMBER`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedImages {
    pub shared_images: Vec<SharedImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedImage {
    pub image_id: String,
    pub can_share: bool,
}

/// The `x-image-meta-*` headers of a request, keys normalized, values percent-decoded where
/// the spec says so. A key may carry several values (kamaki 0.16 sends duplicates).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaHeaders {
    pub fields: BTreeMap<String, Vec<String>>,
    pub properties: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetaHeaderError {
    #[error("Invalid encoding in header {0}")]
    Encoding(String),
}

impl MetaHeaders {
    /// Collects image headers from `(name, value)` pairs (any name case).
    pub fn parse<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Result<MetaHeaders, MetaHeaderError> {
        let mut out = MetaHeaders::default();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            let Some(rest) = lower.strip_prefix(IMAGE_META) else {
                continue;
            };
            let key = normalize_key(rest);
            let decode = |s: &str| {
                crate::api::pithos::decode_header_value(s).ok_or_else(|| MetaHeaderError::Encoding(name.to_string()))
            };
            if let Some(prop) = key.strip_prefix(PROPERTY) {
                // The original header name may carry percent-encoded key characters.
                let raw_key = &name[IMAGE_META.len() + PROPERTY.len()..];
                let prop = normalize_key(&decode(raw_key).unwrap_or_else(|_| prop.to_string()));
                out.properties.entry(prop).or_default().push(decode(value.trim())?);
            } else {
                let v = if key == "name" || key == "description" || key == "location" {
                    decode(value.trim())?
                } else {
                    value.trim().to_string()
                };
                out.fields.entry(key).or_default().push(v);
            }
        }
        Ok(out)
    }

    /// The single value of a field (the last one if repeated).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(|v| v.last()).map(|s| s.as_str())
    }
}

/// A public image with one property, for tests.
#[cfg(test)]
pub(crate) fn sample_image() -> Image {
    Image {
        id: "i".into(),
        name: "My Image".into(),
        location: "pithos://a/c/p".into(),
        owner: "a".into(),
        size: 1,
        checksum: "c".into(),
        disk_format: "diskdump".into(),
        container_format: "bare".into(),
        status: "AVAILABLE".into(),
        is_public: true,
        created_at: 0,
        updated_at: 0,
        properties: [("root_partition".to_string(), "1".to_string())].into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_normalization() {
        assert_eq!(normalize_key("Disk-Format"), "disk_format");
        assert_eq!(normalize_key("ROOT_PARTITION"), "root_partition");
        assert_eq!(normalize_key("root-partition"), "root_partition");
    }

    #[test]
    fn parse_request_headers() {
        let h = [
            ("X-Image-Meta-Name", "My%20Image"),
            ("x-image-meta-property-OSFAMILY", "linux"),
            ("X-Image-Meta-Property-root_partition", "1"),
            ("x-image-meta-property-osfamily", "windows"),
            ("X-Image-Meta-Is-Public", "True"),
            ("content-type", "x"),
        ];
        let m = MetaHeaders::parse(h.iter().copied()).unwrap();
        assert_eq!(m.field("name"), Some("My Image"));
        assert_eq!(m.field("is_public"), Some("True"));
        assert_eq!(m.properties["osfamily"], vec!["linux", "windows"]);
        assert_eq!(m.properties["root_partition"], vec!["1"]);
    }

    #[test]
    fn request_headers_parse_back() {
        let props = [("root_partition".to_string(), "1 2".to_string())].into();
        let h = request_headers(&[("name", "My Image"), ("is-public", "True")], &props);
        let m = MetaHeaders::parse(h.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(m.field("name"), Some("My Image"));
        assert_eq!(m.field("is_public"), Some("True"));
        assert_eq!(m.properties["root_partition"], vec!["1 2"]);
    }

    #[test]
    fn removals_name_what_is_not_wanted() {
        let cur: BTreeMap<String, String> = [("osfamily", "linux"), ("root_partition", "1"), ("users", "root")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let want: BTreeMap<String, String> = [("OSFAMILY", "windows"), ("root-partition", "2")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let h = removal_headers(&cur, &want);
        assert_eq!(h, vec![("x-image-meta-property-users".to_string(), String::new())]);
        let m = MetaHeaders::parse(h.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(m.properties["users"], vec![""]);
    }

    #[test]
    fn locations() {
        let l = location("acc", "images", "a b/c.img");
        assert_eq!(l, "pithos://acc/images/a%20b/c.img");
        assert_eq!(
            parse_location(&l).unwrap(),
            ("acc".into(), "images".into(), "a b/c.img".into())
        );
        assert_eq!(parse_location("pithos://acc/images"), None);
        assert_eq!(parse_location("http://acc/images/x"), None);
    }

    #[test]
    fn the_originals_image_detail_reads() {
        let j = r#"[{"status": "AVAILABLE", "properties": {"osfamily": "linux"}, "checksum": "c", "created_at": "2026-12-01 20:10:49", "disk_format": "diskdump", "updated_at": "2026-12-01 20:10:49", "name": "My Img", "is_snapshot": 0, "location": "pithos://a/pithos/a.txt", "container_format": "bare", "owner": "a", "is_public": true, "deleted_at": "", "id": "i", "size": 6}]"#;
        let list: Vec<ImageDetail> = serde_json::from_str(j).unwrap();
        let img = Image::from(list[0].clone());
        assert_eq!((img.id.as_str(), img.size, img.is_public), ("i", 6, true));
        assert_eq!(img.properties["osfamily"], "linux");
        assert_eq!(
            img.created_at,
            crate::api::timefmt::parse_image_date("2026-12-01 20:10:49").unwrap()
        );
        assert!(!list[0].is_snapshot);
    }

    #[test]
    fn reply_headers_have_all_fields() {
        let img = sample_image();
        let h = img.headers();
        let back = Image::from_headers(h.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, img);
        assert_eq!(h.len(), 16);
        assert!(h.contains(&("x-image-meta-name".into(), "My%20Image".into())));
        assert!(h.contains(&("x-image-meta-is-public".into(), "True".into())));
        assert!(h.contains(&("x-image-meta-property-root-partition".into(), "1".into())));
    }
}
