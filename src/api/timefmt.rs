//! The three time formats of the APIs: RFC 1123 headers, ISO 8601 with microseconds in JSON
//! listings, and Unix seconds with six decimals (as strings) for version timestamps. Times are
//! carried as integer microseconds since the epoch so that no format loses precision.

use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as i64
}

fn to_datetime(t: Micros) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t as i128 * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `Sun, 29 Nov 2026 01:08:56 GMT`
pub fn http_date(t: Micros) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64 / 1_000_000))
}

/// Parses an HTTP date into whole-second micros.
pub fn parse_http_date(s: &str) -> Option<Micros> {
    let t = httpdate::parse_http_date(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64 * 1_000_000)
}

const ISO: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00");
const IMAGE: &[FormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// `2011-12-02T08:10:41.565891+00:00`
pub fn iso_micros(t: Micros) -> String {
    to_datetime(t).format(ISO).unwrap_or_default()
}

/// `2026-11-29 01:09:21` (Plankton's dates).
pub fn image_date(t: Micros) -> String {
    to_datetime(t).format(IMAGE).unwrap_or_default()
}

/// Parses Plankton's `2026-11-29 01:09:21` (UTC).
pub fn parse_image_date(s: &str) -> Option<Micros> {
    let t = time::PrimitiveDateTime::parse(s.trim(), IMAGE).ok()?.assume_utc();
    Some(t.unix_timestamp() * 1_000_000)
}

/// `"1322813441.565891"`
pub fn unix_string(t: Micros) -> String {
    format!("{}.{:06}", t.div_euclid(1_000_000), t.rem_euclid(1_000_000))
}

/// Parses `1322813441.565891` (or whole seconds) into micros.
pub fn parse_unix_string(s: &str) -> Option<Micros> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(secs * 1_000_000 + frac)
}

/// A version timestamp in JSON: written as the original Synnefo writes it, a number of
/// seconds with the microseconds as decimals (`1796151221.306357`); read from a number or a
/// string (what the spec shows), and as `None` from anything else (`null`, a bad string), so
/// that one odd field never fails a whole listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnixTime(pub Option<Micros>);

impl serde::Serialize for UnixTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            // f64 holds a microsecond time of this era exactly enough to print it back
            // (shortest round-trip form, as Python's float repr).
            Some(t) => s.serialize_f64(t as f64 / 1e6),
            None => s.serialize_none(),
        }
    }
}

impl<'de> serde::Deserialize<'de> for UnixTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = UnixTime;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Unix time, as a number or a string")
            }
            fn visit_f64<E>(self, v: f64) -> Result<UnixTime, E> {
                Ok(UnixTime(
                    (v.is_finite() && v.abs() < 1e13).then(|| (v * 1e6).round() as Micros),
                ))
            }
            fn visit_u64<E>(self, v: u64) -> Result<UnixTime, E> {
                Ok(UnixTime(i64::try_from(v).ok().and_then(|s| s.checked_mul(1_000_000))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<UnixTime, E> {
                Ok(UnixTime(v.checked_mul(1_000_000)))
            }
            fn visit_str<E>(self, v: &str) -> Result<UnixTime, E> {
                Ok(UnixTime(parse_unix_string(v.trim())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<UnixTime, E> {
                Ok(UnixTime(None))
            }
            fn visit_none<E>(self) -> Result<UnixTime, E> {
                Ok(UnixTime(None))
            }
            fn visit_unit<E>(self) -> Result<UnixTime, E> {
                Ok(UnixTime(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = 1_322_813_441_565_891;
        assert_eq!(iso_micros(t), "2011-12-02T08:10:41.565891+00:00");
        assert_eq!(unix_string(t), "1322813441.565891");
        assert_eq!(parse_unix_string("1322813441.565891"), Some(t));
        assert_eq!(parse_unix_string("1322813441"), Some(1_322_813_441_000_000));
        assert_eq!(http_date(t), "Fri, 02 Dec 2011 08:10:41 GMT");
        assert_eq!(
            parse_http_date("Fri, 02 Dec 2011 08:10:41 GMT"),
            Some(1_322_813_441_000_000)
        );
        assert_eq!(image_date(t), "2011-12-02 08:10:41");
    }

    #[test]
    fn unix_time_in_json() {
        let read = |j: &str| serde_json::from_str::<UnixTime>(j).unwrap().0;
        // What the original sends, what the spec shows, and what neither should.
        assert_eq!(read("1796151221.306357"), Some(1_796_151_221_306_357));
        assert_eq!(read("1796155115.35279"), Some(1_796_155_115_352_790));
        assert_eq!(read(r#""1322813441.565891""#), Some(1_322_813_441_565_891));
        assert_eq!(read("1322813441"), Some(1_322_813_441_000_000));
        assert_eq!(read("null"), None);
        assert_eq!(read(r#""soon""#), None);
        assert_eq!(read("1e300"), None);
        // Written as the original writes it, and read back to the microsecond.
        let t = UnixTime(Some(1_796_151_221_306_357));
        assert_eq!(serde_json::to_string(&t).unwrap(), "1796151221.306357");
        for us in [0, 1, 999_999, 500_000, 306_357] {
            let t = UnixTime(Some(1_796_151_221_000_000 + us));
            assert_eq!(read(&serde_json::to_string(&t).unwrap()), t.0);
        }
    }
}
