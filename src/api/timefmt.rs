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
}
