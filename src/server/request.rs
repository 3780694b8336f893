//! Reading requests: query parameters, single-valued headers, metadata headers, the token.

use crate::api::pithos::{
    decode_header_value, normalize_meta_key, MAX_META_HEADERS, MAX_META_ITEMS, MAX_META_KEY, MAX_META_VALUE,
};
use crate::server::error::{ApiError, ApiResult};
use crate::store::Meta;
use axum::http::HeaderMap;
use percent_encoding::percent_decode_str;

/// Decoded query parameters in order; flags (`?update`) have an empty value.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> ApiResult<Query> {
        let mut out = vec![];
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| ApiError::bad_request("Query parameters must be UTF-8"))
            };
            out.push((dec(k)?, dec(v)?));
        }
        Ok(Query(out))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    pub fn parse_num<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("Invalid value for {key}"))),
        }
    }

    /// `until`, Unix seconds, in microseconds (versions made at or before it). As the original
    /// (`get_int_parameter`), a value that is not a whole number ≥ 0 counts as absent: kamaki's
    /// `container delete` sends `until=<time()>`, a float, and means a plain delete.
    pub fn until(&self) -> Option<crate::api::timefmt::Micros> {
        let secs: i64 = self.get("until")?.trim().parse().ok().filter(|s| *s >= 0)?;
        Some(secs.saturating_mul(1_000_000))
    }

    /// `format=json|xml|text` or the `Accept` header.
    pub fn wants_json(&self, headers: &HeaderMap) -> bool {
        match self.get("format") {
            Some("json") => true,
            Some(_) => false,
            None => headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json")),
        }
    }
}

/// A header that must appear at most once; its value percent-decoded.
pub fn header(h: &HeaderMap, name: &str) -> ApiResult<Option<String>> {
    let mut it = h.get_all(name).iter();
    let Some(first) = it.next() else { return Ok(None) };
    if it.next().is_some() {
        return Err(ApiError::bad_request(format!("Duplicate header {name}")));
    }
    let s = first
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("Invalid characters in header {name}")))?;
    decode_header_value(s)
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid encoding in header {name}")))
}

/// A header kept raw (not percent-decoded), at most once.
pub fn header_raw<'a>(h: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    let mut it = h.get_all(name).iter();
    let Some(first) = it.next() else { return Ok(None) };
    if it.next().is_some() {
        return Err(ApiError::bad_request(format!("Duplicate header {name}")));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("Invalid characters in header {name}")))
}

/// `X-<Kind>-Meta-*` headers, keys normalized, with the spec's limits. `None` when there are
/// none at all.
pub fn meta_headers(h: &HeaderMap, prefix: &str) -> ApiResult<Option<Meta>> {
    let mut out = Meta::new();
    let mut n = 0;
    for (name, value) in h.iter() {
        let Some(key) = name.as_str().strip_prefix(prefix) else {
            continue;
        };
        n += 1;
        let key = decode_header_value(key).ok_or_else(|| ApiError::bad_request("Invalid metadata key encoding"))?;
        let key = normalize_meta_key(&key);
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Invalid metadata value"))?;
        let value = decode_header_value(value.trim())
            .ok_or_else(|| ApiError::bad_request("Invalid metadata value encoding"))?;
        if key.is_empty() || key.len() > MAX_META_KEY {
            return Err(ApiError::bad_request("Metadata key too long"));
        }
        if value.len() > MAX_META_VALUE {
            return Err(ApiError::bad_request("Metadata value too long"));
        }
        out.insert(key, value);
    }
    if n > MAX_META_HEADERS {
        return Err(ApiError::bad_request("Too many metadata headers"));
    }
    if out.len() > MAX_META_ITEMS {
        return Err(ApiError::bad_request("Too many metadata items"));
    }
    Ok(if n == 0 { None } else { Some(out) })
}

/// The token of a request: `X-Auth-Token` header or `?X-Auth-Token=`.
pub fn token<'a>(h: &'a HeaderMap, q: &'a Query) -> ApiResult<Option<&'a str>> {
    if let Some(t) = header_raw(h, crate::api::pithos::X_AUTH_TOKEN)? {
        return Ok(Some(t.trim()));
    }
    Ok(q.get("X-Auth-Token"))
}

/// `http://host:port` as the client reached us.
pub fn base_url(h: &HeaderMap) -> String {
    let host = h.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let scheme = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// A whole request body of at most `limit` bytes, read into one buffer the size
/// `Content-Length` announces (collecting frames and joining them would hold it twice);
/// `None` when it is longer. (A body announced longer is still read up to the limit before
/// the refusal: a client that writes its whole body before reading the answer then sees
/// the 413, not a connection reset.)
pub async fn body_bytes(h: &HeaderMap, body: axum::body::Body, limit: usize) -> ApiResult<Option<bytes::Bytes>> {
    use http_body_util::BodyExt;
    let announced = h
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut buf = bytes::BytesMut::with_capacity(announced.unwrap_or(0).min(limit as u64) as usize);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("Request body incomplete: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Ok(None);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Some(buf.freeze()))
}
