//! Reading what servers send, as forgiving as the data allows: the original Synnefo writes
//! numbers where the spec shows strings (and `0`/`1` where it shows booleans), adds fields,
//! and writes `null` for some. A field of an unexpected type reads as its default instead of
//! failing a whole listing; the client checks the values it cannot do without.
//!
//! Use with `#[serde(deserialize_with = "lenient::…")]` (and `#[serde(default)]` for missing
//! fields).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// Any JSON scalar as the text a person would read: strings as they are, numbers and
/// booleans printed, `null` as nothing; arrays and objects as nothing.
struct Scalar;

impl<'de> Visitor<'de> for Scalar {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON scalar")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Scalar)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// A string; a number or boolean as its text; anything else as empty.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(d.deserialize_any(Scalar)?.unwrap_or_default())
}

/// A string if there is one (numbers and booleans as their text); `null` or a structure as
/// `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(Scalar)
}

/// A count or size: a non-negative integer, or a string of one; anything else as 0.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = d.deserialize_any(Scalar)?.unwrap_or_default();
    Ok(text.trim().parse().unwrap_or(0))
}

/// A flag: `true`/`false`, a number (non-zero is true, as Python's `0`/`1`), or a string
/// (`"True"`, `"true"`, `"1"`); anything else as false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = d.deserialize_any(Scalar)?.unwrap_or_default();
    let t = text.trim();
    Ok(t.eq_ignore_ascii_case("true") || t.parse::<f64>().is_ok_and(|n| n != 0.0))
}

/// A map of strings (image properties): every scalar value as its text, structures and
/// `null` dropped; a non-map as empty.
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct M;
    impl<'de> Visitor<'de> for M {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<String>()? {
                if let Some(v) = map.next_value_seed(ScalarSeed)? {
                    out.insert(k, v);
                }
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(BTreeMap::new())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(M)
}

struct ScalarSeed;

impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Scalar)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Row {
        #[serde(deserialize_with = "super::string")]
        s: String,
        #[serde(deserialize_with = "super::opt_string")]
        o: Option<String>,
        #[serde(deserialize_with = "super::u64")]
        n: u64,
        #[serde(deserialize_with = "super::bool")]
        b: bool,
        #[serde(deserialize_with = "super::string_map")]
        m: BTreeMap<String, String>,
    }

    fn row(j: &str) -> Row {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn scalars_of_any_type() {
        assert_eq!(
            row(r#"{"s": 5, "o": "x", "n": "12", "b": 1, "m": {"a": "1", "b": 2, "c": true, "d": null, "e": [1]}}"#),
            Row {
                s: "5".into(),
                o: Some("x".into()),
                n: 12,
                b: true,
                m: [("a", "1"), ("b", "2"), ("c", "true")]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
            }
        );
        // What no server should send reads as defaults, never as a failed listing.
        assert_eq!(
            row(r#"{"s": null, "o": {"x": 1}, "n": -3, "b": "no", "m": "x", "extra": [1, {"y": 2}]}"#),
            Row::default()
        );
        assert_eq!(row(r#"{"n": 7, "b": "True"}"#).n, 7);
        assert!(row(r#"{"b": "True"}"#).b && !row(r#"{"b": 0}"#).b && row(r#"{"b": true}"#).b);
        assert_eq!(row(r#"{"n": 1.5}"#).n, 0);
    }
}
