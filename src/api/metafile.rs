//! kamaki's `.meta` metafile (spec/kamaki-flows.md §3.2): the JSON kamaki writes beside an
//! image, and the same shape typed by a person. Parsing turns a file into the registration it
//! asks for; rendering turns a registry entry back into kamaki's layout.

use crate::api::plankton::{self, normalize_key, py_bool, Image};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `N.meta` describes the image `N`.
pub const SUFFIX: &str = ".meta";

/// Metafiles are a few hundred bytes; anything much bigger is a mistake, refused unparsed.
pub const MAX_BYTES: usize = 64 << 10;

/// Registry items that are not properties: name, the two formats, the creation date.
const FIXED_ITEMS: usize = 4;

/// Most properties one image can carry.
pub const MAX_PROPERTIES: usize = plankton::MAX_ITEMS - FIXED_ITEMS;

/// Keys kamaki writes that describe the registry's state and are not settable by a file.
const INFORMATIVE: [&str; 12] = [
    "id",
    "owner",
    "location",
    "size",
    "checksum",
    "created_at",
    "updated_at",
    "deleted_at",
    "is_snapshot",
    "description",
    "store",
    "status",
];

/// What a metafile asks the registry for. Absent formats take the registry's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Registration {
    pub name: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub is_public: bool,
    /// Keys normalized as the registry stores them (lower case, punctuation → `_`).
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetafileError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {0} bytes; a metafile has at most {MAX_BYTES}")]
    TooLarge(usize),
    #[error("the file is not UTF-8")]
    NotUtf8,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("expected a JSON object")]
    NotObject,
    #[error("unknown key {0:?} (known: name, disk-format, container-format, is-public, properties)")]
    UnknownKey(String),
    #[error("{0:?} must be a string, number or boolean")]
    NotScalar(String),
    #[error("\"properties\" must be an object")]
    PropertiesNotObject,
    #[error("\"is-public\" must be true or false, not {0}")]
    NotBool(String),
    #[error("unknown disk format {0:?} (one of {formats})", formats = plankton::DISK_FORMATS.join(", "))]
    DiskFormat(String),
    #[error("unknown container format {0:?} (one of {formats})", formats = plankton::CONTAINER_FORMATS.join(", "))]
    ContainerFormat(String),
    #[error("\"name\" is empty")]
    EmptyName,
    #[error("key {0:?} is longer than {max} bytes", max = plankton::MAX_KEY)]
    KeyTooLong(String),
    #[error("the value of {0:?} is longer than {max} bytes", max = plankton::MAX_VALUE)]
    ValueTooLong(String),
    #[error("{0} properties; an image has at most {MAX_PROPERTIES}")]
    TooManyProperties(usize),
}

/// A scalar as kamaki turns it into a string (`true` → `"True"`).
fn scalar(key: &str, v: &Value) -> Result<String, MetafileError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(py_bool(*b).to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(MetafileError::NotScalar(key.to_string())),
    }
}

fn boolean(v: &Value) -> Result<bool, MetafileError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        other => Err(MetafileError::NotBool(other.to_string())),
    }
}

fn bounded(key: &str, v: String) -> Result<String, MetafileError> {
    if v.len() > plankton::MAX_VALUE {
        return Err(MetafileError::ValueTooLong(key.to_string()));
    }
    Ok(v)
}

/// Parses a metafile as kamaki 0.11/0.16 write it or as a person types it.
pub fn parse(bytes: &[u8]) -> Result<Registration, MetafileError> {
    if bytes.len() > MAX_BYTES {
        return Err(MetafileError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| MetafileError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(MetafileError::Empty);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| MetafileError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(MetafileError::NotObject);
    };
    let mut reg = Registration::default();
    for (raw_key, v) in &map {
        let key = normalize_key(raw_key.trim());
        match key.as_str() {
            "name" => {
                let name = scalar(raw_key, v)?.trim().to_string();
                if name.is_empty() {
                    return Err(MetafileError::EmptyName);
                }
                reg.name = Some(bounded(raw_key, name)?);
            }
            "disk_format" => {
                let f = scalar(raw_key, v)?.trim().to_string();
                if !plankton::DISK_FORMATS.contains(&f.as_str()) {
                    return Err(MetafileError::DiskFormat(f));
                }
                reg.disk_format = Some(f);
            }
            "container_format" => {
                let f = scalar(raw_key, v)?.trim().to_string();
                if !plankton::CONTAINER_FORMATS.contains(&f.as_str()) {
                    return Err(MetafileError::ContainerFormat(f));
                }
                reg.container_format = Some(f);
            }
            "is_public" => reg.is_public = boolean(v)?,
            "properties" => {
                let Value::Object(props) = v else {
                    return Err(MetafileError::PropertiesNotObject);
                };
                for (pk, pv) in props {
                    let k = normalize_key(pk.trim());
                    if k.is_empty() || k.len() > plankton::MAX_KEY {
                        return Err(MetafileError::KeyTooLong(pk.clone()));
                    }
                    let value = bounded(pk, scalar(pk, pv)?)?;
                    reg.properties.insert(k, value);
                }
            }
            k if INFORMATIVE.contains(&k) => {}
            _ => return Err(MetafileError::UnknownKey(raw_key.clone())),
        }
    }
    if reg.properties.len() > MAX_PROPERTIES {
        return Err(MetafileError::TooManyProperties(reg.properties.len()));
    }
    Ok(reg)
}

/// kamaki's layout of a registry entry: every value a string, dashes in keys, indented.
pub fn render(img: &Image) -> String {
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), Value::String(v));
    };
    put("id", img.id.clone());
    put("name", img.name.clone());
    put("location", img.location.clone());
    put("owner", img.owner.clone());
    put("size", img.size.to_string());
    put("checksum", img.checksum.clone());
    put("disk-format", img.disk_format.clone());
    put("container-format", img.container_format.clone());
    put("status", img.status.clone());
    put("is-public", py_bool(img.is_public).to_string());
    put("created-at", crate::api::timefmt::image_date(img.created_at));
    put("updated-at", crate::api::timefmt::image_date(img.updated_at));
    put("deleted-at", String::new());
    let props: Map<String, Value> = img
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    m.insert("properties".into(), Value::Object(props));
    let mut s = serde_json::to_string_pretty(&Value::Object(m)).expect("strings serialize");
    s.push('\n');
    s
}

/// `N.meta` → `N`; `None` for other names, for a bare `.meta`, and for emacs's lock file
/// `.#N.meta` (which holds `user@host.pid`, not JSON).
pub fn image_name(meta_name: &str) -> Option<&str> {
    let base = meta_name.rsplit('/').next().unwrap_or(meta_name);
    if base.starts_with(".#") {
        return None;
    }
    meta_name
        .strip_suffix(SUFFIX)
        .filter(|n| !n.is_empty() && !n.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metafile_names() {
        assert_eq!(image_name("disk.img.meta"), Some("disk.img"));
        assert_eq!(image_name("dir/disk.img.meta"), Some("dir/disk.img"));
        assert_eq!(image_name(".meta"), None);
        assert_eq!(image_name("dir/.meta"), None);
        assert_eq!(image_name("disk.img.meta~"), None);
        assert_eq!(image_name(".#disk.img.meta"), None);
        assert_eq!(image_name("dir/.#disk.img.meta"), None);
    }

    /// Written by kamaki 0.16 `image register` (spec/kamaki-flows.md §3.2).
    const KAMAKI_016: &str = r#"{
  "status": "AVAILABLE", 
  "name": "My Image", 
  "is-snapshot": "False", 
  "checksum": "c538cb9736f86a5c6423138f08164159ea324572c5ab5f6384726433b6922cd4", 
  "description": "", 
  "updated-at": "2026-11-29 01:09:21", 
  "created-at": "2026-11-29 01:09:21", 
  "properties": {
    "osfamily": "linux", 
    "users": "root"
  }, 
  "deleted-at": "", 
  "location": "pithos://9f7a3c2e-1111-4a4a-8b8b-aaaaaaaaaaaa/images/rand.bin", 
  "is-public": "True", 
  "owner": "9f7a3c2e-1111-4a4a-8b8b-aaaaaaaaaaaa (alice@example.org)", 
  "disk-format": "diskdump", 
  "container-format": "bare", 
  "id": "e8a5818f-a9f2-4664-b4a4-f7a348b2b1c6", 
  "size": "10000"
}"#;

    #[test]
    fn what_kamaki_writes() {
        let r = parse(KAMAKI_016.as_bytes()).unwrap();
        assert_eq!(r.name.as_deref(), Some("My Image"));
        assert!(r.is_public);
        assert_eq!(r.disk_format.as_deref(), Some("diskdump"));
        assert_eq!(r.container_format.as_deref(), Some("bare"));
        assert_eq!(r.properties["osfamily"], "linux");
        assert_eq!(r.properties["users"], "root");
        // kamaki 0.11 upper-cases property keys and writes "False"
        let old = r#"{"name": "x", "is-public": "False", "properties": {"OSFAMILY": "linux", "ROOT_PARTITION": "1"}}"#;
        let r = parse(old.as_bytes()).unwrap();
        assert!(!r.is_public);
        assert_eq!(r.properties["root_partition"], "1");
        assert_eq!(r.properties["osfamily"], "linux");
    }

    #[test]
    fn what_people_type() {
        let r = parse(
            br#"{"is_public": true, "Disk_Format": "diskdump", "properties": {"root-partition": 1, "gui": false}}"#,
        )
        .unwrap();
        assert!(r.is_public);
        assert_eq!(r.name, None);
        assert_eq!(r.properties["root_partition"], "1");
        assert_eq!(r.properties["gui"], "False");
        assert!(parse(b"{}").unwrap().properties.is_empty());
    }

    #[test]
    fn bad_files_say_why() {
        use MetafileError::*;
        let e = |s: &str| parse(s.as_bytes()).unwrap_err();
        assert_eq!(parse(b"").unwrap_err(), Empty);
        assert_eq!(parse(b" \n").unwrap_err(), Empty);
        assert!(matches!(e("{\"name\": "), Json(_)));
        assert_eq!(e("[1]"), NotObject);
        assert_eq!(e(r#"{"name": ["a"]}"#), NotScalar("name".into()));
        assert_eq!(e(r#"{"properties": {"a": {"b": 1}}}"#), NotScalar("a".into()));
        assert_eq!(e(r#"{"properties": {"a": null}}"#), NotScalar("a".into()));
        assert_eq!(e(r#"{"properties": "a"}"#), PropertiesNotObject);
        assert_eq!(e(r#"{"is-public": "maybe"}"#), NotBool("\"maybe\"".into()));
        assert_eq!(e(r#"{"disk-format": "qcow9"}"#), DiskFormat("qcow9".into()));
        assert_eq!(e(r#"{"container-format": "zip"}"#), ContainerFormat("zip".into()));
        assert_eq!(e(r#"{"name": " "}"#), EmptyName);
        assert_eq!(e(r#"{"nmae": "x"}"#), UnknownKey("nmae".into()));
        let long_key = format!(r#"{{"properties": {{"{}": "v"}}}}"#, "k".repeat(200));
        assert!(matches!(e(&long_key), KeyTooLong(_)));
        let long_value = format!(r#"{{"properties": {{"k": "{}"}}}}"#, "v".repeat(300));
        assert_eq!(e(&long_value), ValueTooLong("k".into()));
        let many: Vec<String> = (0..MAX_PROPERTIES + 1).map(|i| format!(r#""p{i}": "v""#)).collect();
        assert_eq!(
            e(&format!(r#"{{"properties": {{{}}}}}"#, many.join(","))),
            TooManyProperties(MAX_PROPERTIES + 1)
        );
        assert_eq!(parse(&[0xff, b'{', b'}']).unwrap_err(), NotUtf8);
        assert_eq!(parse(&vec![b' '; 10 << 20]).unwrap_err(), TooLarge(10 << 20));
    }

    #[test]
    fn rendered_entries_parse_back() {
        let img = crate::api::plankton::sample_image();
        let text = render(&img);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["is-public"], "True");
        assert_eq!(v["size"], "1");
        let r = parse(text.as_bytes()).unwrap();
        assert_eq!(r.name.as_deref(), Some("My Image"));
        assert!(r.is_public);
        assert_eq!(r.properties, img.properties);
    }

    #[test]
    fn meta_names() {
        assert_eq!(image_name("a.img.meta"), Some("a.img"));
        assert_eq!(image_name(".meta"), None);
        assert_eq!(image_name("a.img"), None);
    }
}
