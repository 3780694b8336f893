//! The object level of Pithos+: reads (data, ranges, hashmaps, versions), writes (raw PUT,
//! hashmap PUT, copy/move, partial updates), metadata and permissions, delete, and public URLs.

use super::{reply, Ctx};
use crate::api::hashing::{block_count, block_len, BlockHash, BLOCK_HASH, BLOCK_SIZE};
use crate::api::pithos::*;
use crate::api::timefmt::{http_date, parse_http_date, UnixTime};
use crate::server::data;
use crate::server::error::{ApiError, ApiResult};
use crate::server::request::{header, header_raw, meta_headers};
use crate::server::AppState;
use crate::store::access::Access;
use crate::store::{CopySpec, MetaUpdate, NewObject, ObjectInfo, ObjectPath, Precondition};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub use crate::api::pithos::{MAX_HASHMAP_BODY, MAX_OBJECT_SIZE};

/// The permission rule for the caller ([`crate::store::access`]); 403 when it grants
/// nothing, whether or not the object exists.
async fn access(ctx: &Ctx, path: &ObjectPath) -> ApiResult<Access> {
    if ctx.is_owner(&path.account) {
        return Ok(Access::owner());
    }
    ctx.st
        .store
        .access(&ctx.user.uuid, path)
        .await?
        .ok_or_else(|| ApiError::forbidden("Not allowed"))
}

fn precondition(ctx: &Ctx) -> ApiResult<Precondition> {
    Ok(Precondition {
        if_match: header(&ctx.headers, "if-match")?,
        if_none_match: header(&ctx.headers, "if-none-match")?,
        if_version: None,
    })
}

fn object_headers(o: &ObjectInfo, acc: &Access, explicit_version: bool, base: &str) -> Vec<(String, String)> {
    let mut h = vec![
        ("etag".to_string(), o.etag().to_string()),
        ("content-type".to_string(), o.content_type.clone()),
        ("last-modified".to_string(), http_date(o.modified)),
        ("accept-ranges".to_string(), "bytes".to_string()),
        (X_OBJECT_HASH.to_string(), o.merkle.clone()),
        (X_OBJECT_UUID.to_string(), o.uuid.clone()),
        (X_OBJECT_VERSION.to_string(), o.version.to_string()),
        (X_OBJECT_VERSION_TIMESTAMP.to_string(), http_date(o.version_ts)),
        (X_OBJECT_MODIFIED_BY.to_string(), o.modified_by.clone()),
        // (the original's flag for blocks still being copied in by its backend; always 1 here)
        (AVAILABLE.to_string(), "1".to_string()),
    ];
    for (k, v) in &o.meta {
        h.push((format!("{OBJECT_META}{k}"), encode_header_value(v)));
    }
    if !explicit_version {
        if acc.owner {
            if let Some(s) = &o.sharing {
                h.push((X_OBJECT_SHARING.to_string(), s.to_string()));
            }
            if let Some(p) = &o.public_id {
                h.push((X_OBJECT_PUBLIC.to_string(), format!("{base}/public/{p}")));
            }
        } else {
            h.push((
                X_OBJECT_ALLOWED_TO.to_string(),
                if acc.write { "write" } else { "read" }.to_string(),
            ));
            if let Some(by) = &acc.shared_by {
                h.push((X_OBJECT_SHARED_BY.to_string(), encode_header_value(by)));
            }
        }
    }
    h
}

pub async fn handle(ctx: &Ctx, account: &str, container: &str, object: &str, body: Body) -> ApiResult<Response> {
    let path = ObjectPath::new(account, container, object);
    match ctx.method.as_str() {
        "HEAD" | "GET" => read(ctx, &path).await,
        "PUT" => put(ctx, &path, body).await,
        "COPY" | "MOVE" => copy_method(ctx, &path).await,
        "POST" => post(ctx, &path, body).await,
        "DELETE" => delete(ctx, &path).await,
        _ => Err(ApiError::not_allowed("HEAD, GET, PUT, POST, DELETE, COPY, MOVE")),
    }
}

async fn read(ctx: &Ctx, path: &ObjectPath) -> ApiResult<Response> {
    let acc = access(ctx, path).await?;
    let q = &ctx.query;
    if q.get("version") == Some("list") {
        let versions = ctx.st.store.list_versions(path).await?;
        let list = VersionList {
            versions: versions.into_iter().map(|(id, t)| (id, UnixTime(Some(t)))).collect(),
        };
        return Ok(reply(
            StatusCode::OK,
            vec![("content-type".into(), "application/json; charset=UTF-8".into())],
            Body::from(serde_json::to_string(&list).unwrap_or_default()),
        ));
    }
    let version: Option<u64> = match q.get("version") {
        None | Some("") => None,
        // (a version that is no number is one that does not exist, as the original says)
        Some(v) => Some(v.parse().map_err(|_| ApiError::not_found("Version does not exist"))?),
    };
    let info = ctx.st.store.object_info(path, version).await?;
    conditional(ctx, &info)?;
    let headers = object_headers(&info, &acc, version.is_some(), &ctx.base);
    if q.has("hashmap") {
        let v = info.version;
        let hashes = ctx.st.store.version_hashes(v).await?;
        let hm = Hashmap {
            block_size: BLOCK_SIZE as u64,
            block_hash: BLOCK_HASH.to_string(),
            bytes: info.size,
            hashes,
        };
        let mut h: Vec<_> = headers.into_iter().filter(|(k, _)| k != "content-type").collect();
        h.push(("content-type".into(), "application/json; charset=UTF-8".into()));
        let body = if ctx.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(serde_json::to_string(&hm).unwrap_or_default())
        };
        return Ok(reply(StatusCode::OK, h, body));
    }
    serve_data(&ctx.st, &ctx.method, &ctx.headers, info, headers).await
}

/// If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since on reads.
fn conditional(ctx: &Ctx, o: &ObjectInfo) -> ApiResult<()> {
    let matches = |list: &str| {
        list.split(',')
            .map(|t| t.trim().trim_matches('"'))
            .any(|t| t == "*" || t.eq_ignore_ascii_case(o.etag()))
    };
    if let Some(m) = header(&ctx.headers, "if-match")? {
        if !matches(&m) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "Resource ETag does not match",
            ));
        }
    }
    if let Some(m) = header(&ctx.headers, "if-none-match")? {
        if matches(&m) {
            return Err(ApiError::new(StatusCode::NOT_MODIFIED, ""));
        }
    }
    let modified_secs = o.modified / 1_000_000 * 1_000_000;
    if let Some(t) = header(&ctx.headers, "if-modified-since")?.and_then(|v| parse_http_date(&v)) {
        if modified_secs <= t {
            return Err(ApiError::new(StatusCode::NOT_MODIFIED, ""));
        }
    }
    if let Some(t) = header(&ctx.headers, "if-unmodified-since")?.and_then(|v| parse_http_date(&v)) {
        if modified_secs > t {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "Resource has been modified",
            ));
        }
    }
    Ok(())
}

/// The object's bytes: whole, one range (206), or several (multipart/byteranges).
async fn serve_data(
    st: &AppState,
    method: &Method,
    req_headers: &axum::http::HeaderMap,
    info: ObjectInfo,
    mut headers: Vec<(String, String)>,
) -> ApiResult<Response> {
    let size = info.size;
    let v = info.version;
    let hashes = Arc::new(if size == 0 {
        vec![]
    } else {
        st.store.version_hashes(v).await?
    });
    let ranges = match header_raw(req_headers, "range")? {
        None => None,
        Some(r) => match parse_range_header(r) {
            // An unparsable Range header is ignored, as HTTP says, and so is one of more
            // ranges than a client reading an object needs (HTTP lets a server ignore any).
            None => None,
            Some(items) if items.len() > MAX_RANGES => None,
            Some(items) => {
                let resolved = coalesce(items.iter().filter_map(|i| i.resolve(size)).collect());
                if resolved.is_empty() {
                    let mut e = ApiError::range("Requested range not satisfiable").into_response();
                    e.headers_mut()
                        .insert("content-range", format!("bytes */{size}").parse().expect("ascii"));
                    return Ok(e);
                }
                Some(resolved)
            }
        },
    };
    let head = *method == Method::HEAD;
    if !head {
        headers.push(("content-disposition".into(), content_disposition(&info.name)));
    }
    match ranges {
        None => {
            headers.push(("content-length".into(), size.to_string()));
            let body = if head || size == 0 {
                Body::empty()
            } else {
                Body::from_stream(data::range_stream(st.clone(), hashes, size, 0, size - 1))
            };
            let mut r = reply(StatusCode::OK, headers, body);
            if head {
                r.headers_mut()
                    .insert("content-length", size.to_string().parse().expect("ascii"));
            }
            Ok(r)
        }
        Some(rs) if rs.len() == 1 => {
            let (a, b) = rs[0];
            headers.push(("content-range".into(), format!("bytes {a}-{b}/{size}")));
            headers.push(("content-length".into(), (b - a + 1).to_string()));
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(data::range_stream(st.clone(), hashes, size, a, b))
            };
            Ok(reply(StatusCode::PARTIAL_CONTENT, headers, body))
        }
        Some(rs) => {
            let boundary = format!("{:032x}", rand::random::<u128>());
            headers.retain(|(k, _)| k != "content-type");
            headers.push((
                "content-type".into(),
                format!("multipart/byteranges; boundary={boundary}"),
            ));
            let mut parts = vec![];
            for &(a, b) in &rs {
                // (the original's part headers)
                let pre = format!(
                    "--{boundary}\r\nContent-Range: bytes {a}-{b}/{size}\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                );
                parts.push((pre, a, b));
            }
            let total: u64 = parts
                .iter()
                .map(|(p, a, b)| p.len() as u64 + (b - a + 1) + 2)
                .sum::<u64>()
                + format!("--{boundary}--\r\n").len() as u64;
            headers.push(("content-length".into(), total.to_string()));
            if head {
                return Ok(reply(StatusCode::PARTIAL_CONTENT, headers, Body::empty()));
            }
            let parts = parts.into_iter().map(|(pre, a, b)| (Bytes::from(pre), a, b)).collect();
            let tail = Bytes::from(format!("--{boundary}--\r\n"));
            let stream = data::multipart_stream(st.clone(), hashes, size, parts, tail);
            Ok(reply(StatusCode::PARTIAL_CONTENT, headers, Body::from_stream(stream)))
        }
    }
}

/// Most ranges one GET may ask for; with more, the Range header is ignored (the whole object,
/// 200). Swift draws the line at 100 too.
const MAX_RANGES: usize = 100;

/// Resolved ranges sorted, with those that overlap or touch merged: an answer is never more
/// bytes than the object however the ranges repeat (20000 × `0-` once announced 84 GB for a
/// 4 MB object). HTTP lets a server coalesce ranges, and clients may not rely on their order.
fn coalesce(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some((_, last)) if a <= last.saturating_add(1) => *last = (*last).max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// What the original says of an object's data (`inline`, by its name).
fn content_disposition(name: &str) -> String {
    format!("inline; filename=\"{}\"", name.replace(['"', '\r', '\n'], "_"))
}

fn sharing_and_public(ctx: &Ctx) -> ApiResult<(Option<Sharing>, Option<bool>)> {
    let sharing = match header(&ctx.headers, X_OBJECT_SHARING)? {
        None => None,
        Some(s) => Some(Sharing::parse(&s).map_err(|e| ApiError::bad_request(e.to_string()))?),
    };
    let public = header(&ctx.headers, X_OBJECT_PUBLIC)?.map(|v| v.trim().eq_ignore_ascii_case("true"));
    Ok((sharing, public))
}

fn content_type(ctx: &Ctx) -> ApiResult<String> {
    Ok(header(&ctx.headers, "content-type")?
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| OCTET_STREAM.to_string()))
}

fn created(o: &ObjectInfo) -> Response {
    reply(
        StatusCode::CREATED,
        vec![
            ("etag".into(), o.etag().to_string()),
            (X_OBJECT_VERSION.into(), o.version.to_string()),
        ],
        Body::empty(),
    )
}

async fn put(ctx: &Ctx, path: &ObjectPath, body: Body) -> ApiResult<Response> {
    if let Some(src) = header(&ctx.headers, X_COPY_FROM)? {
        return copy(ctx, &src, path.clone(), false, true).await;
    }
    if let Some(src) = header(&ctx.headers, X_MOVE_FROM)? {
        return copy(ctx, &src, path.clone(), true, true).await;
    }
    if header(&ctx.headers, X_OBJECT_MANIFEST)?.is_some() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "X-Object-Manifest (segmented objects) is not supported",
        ));
    }
    let acc = access(ctx, path).await?;
    if !acc.write {
        return Err(ApiError::forbidden("Not allowed"));
    }
    let (sharing, public) = sharing_and_public(ctx)?;
    if !acc.owner && (sharing.is_some() || public.is_some()) {
        return Err(ApiError::forbidden("Only the owner may change permissions"));
    }
    let ctype = content_type(ctx)?;
    let meta = meta_headers(&ctx.headers, OBJECT_META)?.unwrap_or_default();
    let cond = precondition(ctx)?;
    let (size, hashes, md5) = if ctx.query.has("hashmap") {
        let (size, hashes) = read_hashmap_body(ctx, body).await?;
        (size, hashes, None)
    } else {
        let chunked = ctx
            .headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("chunked"));
        if ctx.headers.get("content-length").is_none() && !chunked {
            return Err(ApiError::new(StatusCode::LENGTH_REQUIRED, "Missing Content-Length"));
        }
        let ing = data::ingest(&ctx.st, &ctx.user.uuid, body.into_data_stream(), MAX_OBJECT_SIZE, true).await?;
        let md5 = ing.md5.clone().unwrap_or_default();
        if let Some(etag) = header(&ctx.headers, "etag")? {
            if !etag.trim_matches('"').eq_ignore_ascii_case(&md5) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Object ETag does not match",
                ));
            }
        }
        (ing.size, ing.hashes, Some(md5))
    };
    let obj = NewObject {
        size,
        hashes,
        content_type: ctype,
        md5,
        meta,
        modified_by: ctx.user.uuid.clone(),
        sharing,
        public,
    };
    let info = ctx.st.store.put_object(path, obj, &cond).await?;
    Ok(created(&info))
}

/// A hashmap PUT body, checked: well-formed, as many hashes as the size needs, and a last
/// block no longer than the size allows. Missing blocks → 409 with their list.
async fn read_hashmap_body(ctx: &Ctx, body: Body) -> ApiResult<(u64, Vec<BlockHash>)> {
    let bytes = crate::server::request::body_bytes(&ctx.headers, body, MAX_HASHMAP_BODY)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Hashmap too large"))?;
    let hm: HashmapPut =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("Invalid hashmap: {e}")))?;
    if hm.bytes > MAX_OBJECT_SIZE {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Object too large"));
    }
    if hm.hashes.len() as u64 != block_count(hm.bytes) {
        return Err(ApiError::bad_request(format!(
            "Invalid hashmap: {} hashes for {} bytes (need {})",
            hm.hashes.len(),
            hm.bytes,
            block_count(hm.bytes)
        )));
    }
    drop(bytes);
    let hashes = Arc::new(hm.hashes);
    let missing = ctx.st.store.missing_blocks(&ctx.user.uuid, hashes.clone()).await?;
    if !missing.is_empty() {
        return Err(crate::store::StoreError::MissingBlocks(missing).into());
    }
    let hashes = Arc::try_unwrap(hashes).unwrap_or_else(|a| a.to_vec());
    if let Some(last) = hashes.last().copied() {
        let want = block_len(hm.bytes, hashes.len() as u64 - 1) as u64;
        let have = ctx.st.store.block_stored_len(&last).await?.unwrap_or(0);
        if have > want {
            return Err(ApiError::bad_request(
                "Invalid hashmap: the last block is longer than the object size allows",
            ));
        }
    }
    Ok((hm.bytes, hashes))
}

/// `/container/object` of a copy source or destination header.
fn split_target(v: &str) -> ApiResult<(String, String)> {
    let v = v.trim();
    let rest = v.strip_prefix('/').unwrap_or(v);
    let (c, o) = rest
        .split_once('/')
        .ok_or_else(|| ApiError::bad_request("Invalid source or destination"))?;
    if c.is_empty()
        || o.is_empty()
        || o.len() > MAX_OBJECT_NAME
        || o.contains('\0')
        || o.split('/').any(|s| s == "." || s == "..")
    {
        return Err(ApiError::bad_request("Invalid source or destination"));
    }
    Ok((c.to_string(), o.to_string()))
}

async fn copy_method(ctx: &Ctx, src: &ObjectPath) -> ApiResult<Response> {
    let dest = header(&ctx.headers, DESTINATION)?.ok_or_else(|| ApiError::bad_request("Missing Destination header"))?;
    let (c, o) = split_target(&dest)?;
    let dacc = header(&ctx.headers, DESTINATION_ACCOUNT)?.unwrap_or_else(|| src.account.clone());
    let is_move = ctx.method.as_str() == "MOVE";
    let from = format!("/{}/{}", src.container, src.name);
    let dst = ObjectPath::new(&dacc, &c, &o);
    copy_with_source_account(ctx, &from, &src.account, dst, is_move, false).await
}

async fn copy(ctx: &Ctx, from: &str, dst: ObjectPath, is_move: bool, is_put: bool) -> ApiResult<Response> {
    let sacc = header(&ctx.headers, X_SOURCE_ACCOUNT)?.unwrap_or_else(|| dst.account.clone());
    copy_with_source_account(ctx, from, &sacc, dst, is_move, is_put).await
}

async fn copy_with_source_account(
    ctx: &Ctx,
    from: &str,
    src_account: &str,
    dst: ObjectPath,
    is_move: bool,
    is_put: bool,
) -> ApiResult<Response> {
    let (sc, so) = split_target(from)?;
    let src = ObjectPath::new(src_account, &sc, &so);
    if is_move && !ctx.is_owner(&src.account) {
        return Err(ApiError::forbidden("Only the owner may move an object"));
    }
    if !ctx.is_owner(&dst.account) {
        return Err(ApiError::forbidden("Not allowed"));
    }
    // (a copy by someone else is the store's to check, object by object, in its
    // transaction: a recursive one copies only what they may read)
    let reader = (!ctx.is_owner(&src.account)).then(|| ctx.user.uuid.clone());
    let src_version = match header(&ctx.headers, X_SOURCE_VERSION)? {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| ApiError::bad_request("Invalid X-Source-Version"))?,
        ),
    };
    let (sharing, public) = sharing_and_public(ctx)?;
    let content_type = header(&ctx.headers, "content-type")?
        .filter(|c| !c.is_empty() && (is_put || c != "application/x-www-form-urlencoded"));
    let meta = meta_headers(&ctx.headers, OBJECT_META)?.map(MetaUpdate::Replace);
    let spec = CopySpec {
        src,
        src_version,
        dst,
        is_move,
        recursive: ctx.query.has("delimiter"),
        content_type,
        meta,
        modified_by: ctx.user.uuid.clone(),
        sharing,
        public,
        reader,
    };
    let cond = precondition(ctx)?;
    let info = ctx.st.store.copy_object(&spec, &cond).await?;
    // (no ETag: the original sends none for a copy or a move)
    Ok(reply(
        StatusCode::CREATED,
        vec![(X_OBJECT_VERSION.into(), info.version.to_string())],
        Body::empty(),
    ))
}

async fn post(ctx: &Ctx, path: &ObjectPath, body: Body) -> ApiResult<Response> {
    let acc = access(ctx, path).await?;
    let ctype = header(&ctx.headers, "content-type")?;
    let source = header(&ctx.headers, X_SOURCE_OBJECT)?;
    let has_body = ctx
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || ctx.headers.get("transfer-encoding").is_some();
    if source.is_some()
        || (ctype.as_deref() == Some(OCTET_STREAM) && (has_body || ctx.headers.contains_key("content-range")))
    {
        if !acc.write {
            return Err(ApiError::forbidden("Not allowed"));
        }
        return data_update(ctx, path, body, source).await;
    }
    let (sharing, public) = sharing_and_public(ctx)?;
    if (sharing.is_some() || public.is_some()) && !acc.owner {
        return Err(ApiError::forbidden("Only the owner may change permissions"));
    }
    let update = ctx.query.has("update");
    let meta = meta_headers(&ctx.headers, OBJECT_META)?;
    if meta.is_some() && !acc.write {
        return Err(ApiError::forbidden("Not allowed"));
    }
    let p = path.clone();
    let by = ctx.user.uuid.clone();
    let meta_update = match (meta, update) {
        (Some(m), true) => Some(MetaUpdate::Merge(m)),
        (Some(m), false) => Some(MetaUpdate::Replace(m)),
        (None, true) => None,
        (None, false) if acc.write => Some(MetaUpdate::Replace(Default::default())),
        (None, false) => None,
    };
    let s = &ctx.st.store;
    if sharing.is_some() || public.is_some() {
        s.set_permissions(&p, sharing.as_ref(), public).await?;
    }
    let new_version = match meta_update {
        Some(m) => Some(s.update_object_meta(&p, &m, &by).await?.version),
        None => None,
    };
    // Permissions belong to the path, not to a version: only a metadata change makes one
    // (and only then does the original name it).
    let headers = new_version
        .map(|v| vec![(X_OBJECT_VERSION.into(), v.to_string())])
        .unwrap_or_default();
    Ok(reply(StatusCode::ACCEPTED, headers, Body::empty()))
}

/// A partial write: `Content-Range` says where; the body or another object says what.
async fn data_update(ctx: &Ctx, path: &ObjectPath, body: Body, source: Option<String>) -> ApiResult<Response> {
    let range =
        header(&ctx.headers, "content-range")?.ok_or_else(|| ApiError::bad_request("Missing Content-Range header"))?;
    let range = parse_content_range(&range).ok_or_else(|| ApiError::range("Invalid Content-Range"))?;
    let cur = ctx.st.store.object_info(path, None).await?;
    if let Some(t) = range.total {
        if t != cur.size {
            return Err(ApiError::range("Content-Range total does not match the object size"));
        }
    }
    let offset = range.first.unwrap_or(cur.size);
    if offset > cur.size {
        return Err(ApiError::range("Content-Range starts past the end of the object"));
    }
    let v = cur.version;
    let hashes = Arc::new(ctx.st.store.version_hashes(v).await?);
    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Object too large");
    let truncate_to: Option<u64> = match header(&ctx.headers, X_OBJECT_BYTES)? {
        None => None,
        Some(v) => Some(object_bytes(&v)?),
    };
    // The length a Content-Range names (`a-b`: b - a + 1), without wrapping at 2^64.
    let range_len = |last: u64| {
        last.checked_sub(offset)
            .and_then(|n| n.checked_add(1))
            .ok_or_else(too_large)
    };
    let (mut new_hashes, mut new_size) = match source {
        Some(src) => {
            let (sc, so) = split_target(&src)?;
            let sacc = header(&ctx.headers, X_SOURCE_ACCOUNT)?.unwrap_or_else(|| path.account.clone());
            let sp = ObjectPath::new(&sacc, &sc, &so);
            access(ctx, &sp).await?;
            let sver = match header(&ctx.headers, X_SOURCE_VERSION)? {
                None => None,
                Some(v) => Some(
                    v.parse()
                        .map_err(|_| ApiError::bad_request("Invalid X-Source-Version"))?,
                ),
            };
            let sinfo = ctx.st.store.object_info(&sp, sver).await?;
            let sv = sinfo.version;
            let shashes = Arc::new(ctx.st.store.version_hashes(sv).await?);
            let len = match range.last {
                Some(l) => range_len(l)?,
                None => sinfo.size,
            };
            if len > sinfo.size {
                return Err(ApiError::range("Content-Range is longer than the source object"));
            }
            if offset.checked_add(len).is_none_or(|end| end > MAX_OBJECT_SIZE) {
                return Err(too_large());
            }
            if len == 0 {
                (hashes.to_vec(), cur.size)
            } else {
                let stream = Box::pin(data::range_stream(ctx.st.clone(), shashes, sinfo.size, 0, len - 1));
                data::patch(&ctx.st, &ctx.user.uuid, hashes.clone(), cur.size, offset, stream, len).await?
            }
        }
        None => {
            let declared: Option<u64> = ctx
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let len = match (range.last, declared) {
                (Some(l), Some(d)) if range_len(l)? != d => {
                    return Err(ApiError::bad_request("Body length does not match Content-Range"));
                }
                (Some(l), _) => range_len(l)?,
                (None, Some(d)) => d,
                (None, None) => return Err(ApiError::new(StatusCode::LENGTH_REQUIRED, "Missing Content-Length")),
            };
            if offset.checked_add(len).is_none_or(|end| end > MAX_OBJECT_SIZE) {
                return Err(too_large());
            }
            data::patch(
                &ctx.st,
                &ctx.user.uuid,
                hashes.clone(),
                cur.size,
                offset,
                body.into_data_stream(),
                len,
            )
            .await?
        }
    };
    if let Some(n) = truncate_to {
        new_hashes = data::truncate(&ctx.st, &ctx.user.uuid, Arc::new(new_hashes), new_size, n).await?;
        new_size = n;
    }
    let obj = NewObject {
        size: new_size,
        hashes: new_hashes,
        content_type: cur.content_type.clone(),
        md5: None,
        meta: cur.meta.clone(),
        modified_by: ctx.user.uuid.clone(),
        sharing: None,
        public: None,
    };
    let cond = Precondition {
        if_version: Some(cur.version),
        ..precondition(ctx)?
    };
    let info = ctx.st.store.put_object(path, obj, &cond).await?;
    Ok(reply(
        StatusCode::NO_CONTENT,
        vec![
            ("etag".into(), info.etag().to_string()),
            (X_OBJECT_VERSION.into(), info.version.to_string()),
        ],
        Body::empty(),
    ))
}

async fn delete(ctx: &Ctx, path: &ObjectPath) -> ApiResult<Response> {
    if !ctx.is_owner(&path.account) {
        return Err(ApiError::forbidden("Only the owner may delete an object"));
    }
    if let Some(until) = ctx.query.until() {
        ctx.st.store.purge_object(path, until).await?;
        return Ok(reply(StatusCode::NO_CONTENT, vec![], Body::empty()));
    }
    let recursive = ctx.query.has("delimiter");
    ctx.st.store.delete_object(path, &ctx.user.uuid, recursive).await?;
    Ok(reply(StatusCode::NO_CONTENT, vec![], Body::empty()))
}

/// `GET|HEAD /public/<id>`: a published object, without a token.
pub async fn public_object(State(st): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return ApiError::not_allowed("GET, HEAD").into_response();
    }
    let found = st.store.object_by_public_id(&id).await.map_err(ApiError::from);
    let info = match found {
        Ok(Some(i)) => i,
        Ok(None) => return ApiError::not_found("Object does not exist").into_response(),
        Err(e) => return e.into_response(),
    };
    let headers = vec![
        ("etag".to_string(), info.etag().to_string()),
        ("content-type".to_string(), info.content_type.clone()),
        ("last-modified".to_string(), http_date(info.modified)),
        (AVAILABLE.to_string(), "1".to_string()),
    ];
    match serve_data(&st, &method, req.headers(), info, headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// `X-Object-Bytes`: a size of at most [`MAX_OBJECT_SIZE`] (the new size's hashmap is built
/// in memory: bounded like any object's).
fn object_bytes(v: &str) -> ApiResult<u64> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid X-Object-Bytes"))?;
    if n > MAX_OBJECT_SIZE {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Object too large"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::{coalesce, object_bytes, MAX_OBJECT_SIZE};

    proptest::proptest! {
        /// Any X-Object-Bytes: a size within the bound, or a 400/413.
        #[test]
        fn object_bytes_are_bounded(v in proptest::prelude::prop_oneof![" ?[0-9]{1,25} ?", proptest::prelude::any::<String>()]) {
            match object_bytes(&v) {
                Ok(n) => proptest::prop_assert!(n <= MAX_OBJECT_SIZE),
                Err(e) => proptest::prop_assert!(e.status == 400 || e.status == 413, "{v:?}: {}", e.status),
            }
        }
    }

    #[test]
    fn ranges_merge_where_they_overlap_or_touch() {
        assert_eq!(coalesce(vec![(4, 5), (0, 1)]), vec![(0, 1), (4, 5)], "sorted, apart");
        assert_eq!(coalesce(vec![(0, 9); 20000]), vec![(0, 9)]);
        assert_eq!(coalesce(vec![(0, 3), (4, 5), (2, 8), (10, 10)]), vec![(0, 8), (10, 10)]);
        assert_eq!(coalesce(vec![(5, u64::MAX), (0, 0)]), vec![(0, 0), (5, u64::MAX)]);
        assert!(coalesce(vec![]).is_empty());
    }
}
