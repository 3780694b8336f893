//! Pithos+ object storage (spec/pithos.md): the request path parsed into a typed endpoint, the
//! access rule of each, and the account and container levels. Objects are in `pithos/object.rs`.

mod object;

pub use object::public_object;

use crate::api::hashing::{BLOCK_HASH, BLOCK_SIZE};
use crate::api::pithos::*;
use crate::api::timefmt::{http_date, iso_micros, UnixTime};
use crate::server::error::{ApiError, ApiResult};
use crate::server::request::{header, meta_headers, Query};
use crate::server::AppState;
use crate::store::{ContainerInfo, ListQuery, Listed, MetaUpdate, ObjectInfo, PolicyUpdate, User, Versioning};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

/// The largest body of a block-upload POST (many blocks may come in one).
const MAX_BLOCK_POST: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Top,
    Account {
        account: String,
    },
    Container {
        account: String,
        container: String,
    },
    Object {
        account: String,
        container: String,
        object: String,
    },
}

fn decode_segment(raw: &str, what: &str) -> ApiResult<String> {
    let s = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(format!("{what} name is not UTF-8")))?
        .into_owned();
    // (a text listing is a name a line: a line break in a name would read as two names)
    if s.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what} names may not contain control characters (NUL, line breaks, ...)"
        )));
    }
    Ok(s)
}

/// Parses the part of the path after `/object-store/v1` (still percent-encoded).
pub fn parse_endpoint(raw: &str) -> ApiResult<Endpoint> {
    // (`…/object-store/v1` itself is no endpoint; `…/v1/` lists the accounts sharing with
    // the caller)
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(ApiError::bad_request("API endpoint not found"));
    };
    if rest.is_empty() {
        return Ok(Endpoint::Top);
    }
    let mut it = rest.splitn(3, '/');
    let account = decode_segment(it.next().unwrap_or(""), "Account")?;
    if account.contains('/') || account.is_empty() {
        return Err(ApiError::bad_request("Invalid account"));
    }
    let Some(c) = it.next() else {
        return Ok(Endpoint::Account { account });
    };
    if c.is_empty() {
        return Ok(Endpoint::Account { account });
    }
    let container = decode_segment(c, "Container")?;
    if container.contains('/') || container == "." || container == ".." {
        return Err(ApiError::bad_request("Invalid container name"));
    }
    if container.len() > MAX_CONTAINER_NAME {
        return Err(ApiError::bad_request("Container name too large"));
    }
    let object_raw = it.next().unwrap_or("");
    if object_raw.is_empty() {
        return Ok(Endpoint::Container { account, container });
    }
    if object_raw.to_ascii_lowercase().contains("%2f") {
        return Err(ApiError::bad_request("Encoded '/' is not allowed in object names"));
    }
    let object = decode_segment(object_raw, "Object")?;
    if object.len() > MAX_OBJECT_NAME {
        return Err(ApiError::bad_request("Object name too large"));
    }
    if object.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ApiError::bad_request(
            "Object names may not contain '.' or '..' segments",
        ));
    }
    Ok(Endpoint::Object {
        account,
        container,
        object,
    })
}

/// Everything a handler needs about one request.
pub struct Ctx {
    pub st: AppState,
    pub user: User,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    pub base: String,
}

impl Ctx {
    pub fn is_owner(&self, account: &str) -> bool {
        self.user.uuid == account
    }
}

pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let listing = is_listing(&req);
    let (mut r, failed) = match handle_inner(st, req).await {
        Ok(r) => (r, false),
        Err(e) => (e.into_response(), true),
    };
    // The original's content types: a listing's (and its faults') by the format asked for,
    // text by default; JSON for every other answer that has no data of its own.
    let text = HeaderValue::from_static("text/plain; charset=UTF-8");
    let json = HeaderValue::from_static("application/json; charset=UTF-8");
    let h = r.headers_mut();
    match listing {
        Some(false) if failed || !h.contains_key(CONTENT_TYPE) => {
            h.insert(CONTENT_TYPE, text);
        }
        _ => {
            h.entry(CONTENT_TYPE).or_insert(json);
        }
    }
    r
}

/// For a GET of the top, an account or a container: whether it asks for JSON.
fn is_listing(req: &Request) -> Option<bool> {
    if req.method() != Method::GET {
        return None;
    }
    let raw = req
        .uri()
        .path()
        .strip_prefix(crate::api::astakos::OBJECT_STORE_PATH)
        .unwrap_or("");
    if matches!(parse_endpoint(raw), Ok(Endpoint::Object { .. }) | Err(_)) {
        return None;
    }
    let json = Query::parse(req.uri().query())
        .map(|q| q.wants_json(req.headers()))
        .unwrap_or(false);
    Some(json)
}

async fn handle_inner(st: AppState, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query())?;
    let raw = parts
        .uri
        .path()
        .strip_prefix(crate::api::astakos::OBJECT_STORE_PATH)
        .unwrap_or("");
    let endpoint = parse_endpoint(raw)?;
    let user = st.authenticate(&parts.headers, &query).await?;
    let base = crate::server::request::base_url(&parts.headers);
    let ctx = Ctx {
        st,
        user,
        method: parts.method,
        headers: parts.headers,
        query,
        base,
    };
    match endpoint {
        Endpoint::Top => top(&ctx).await,
        Endpoint::Account { account } => account_level(&ctx, &account).await,
        Endpoint::Container { account, container } => container_level(&ctx, &account, &container, body).await,
        Endpoint::Object {
            account,
            container,
            object,
        } => object::handle(&ctx, &account, &container, &object, body).await,
    }
}

/// Builds a reply; header values that are not valid are skipped rather than failing the reply.
pub fn reply(status: StatusCode, headers: Vec<(String, String)>, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

fn text_or_json(
    json: bool,
    names: Vec<String>,
    entries: &impl serde::Serialize,
    mut headers: Vec<(String, String)>,
) -> Response {
    if json {
        headers.push(("content-type".into(), "application/json; charset=UTF-8".into()));
        let body = serde_json::to_vec(entries).unwrap_or_else(|_| b"[]".to_vec());
        reply(StatusCode::OK, headers, Body::from(body))
    } else if names.is_empty() {
        reply(StatusCode::NO_CONTENT, headers, Body::empty())
    } else {
        headers.push(("content-type".into(), "text/plain; charset=UTF-8".into()));
        let mut s = names.join("\n");
        s.push('\n');
        reply(StatusCode::OK, headers, Body::from(s))
    }
}

async fn top(ctx: &Ctx) -> ApiResult<Response> {
    if ctx.method != Method::GET && ctx.method != Method::HEAD {
        return Err(ApiError::not_allowed("GET, HEAD"));
    }
    let s = &ctx.st.store;
    let mut accounts = vec![];
    for a in s.accounts_sharing_with(&ctx.user.uuid).await? {
        accounts.push((s.account_info(&a).await?.modified, a));
    }
    let json = ctx.query.wants_json(&ctx.headers);
    let entries = named_entries(&accounts);
    let names = accounts.into_iter().map(|(_, a)| a).collect();
    Ok(text_or_json(json, names, &entries, vec![]))
}

/// Entries of a listing of names another user may see: `{"name", "last_modified"}`.
fn named_entries(items: &[(crate::api::timefmt::Micros, String)]) -> serde_json::Value {
    serde_json::Value::Array(
        items
            .iter()
            .map(|(t, n)| serde_json::json!({"name": n, "last_modified": iso_micros(*t)}))
            .collect(),
    )
}

fn account_headers(account: &str, info: &crate::store::AccountInfo) -> Vec<(String, String)> {
    // The original reports no limit as the largest quota Astakos knows, and each project's
    // quota besides (every account here is its own one project).
    let quota = if info.quota == 0 {
        UNLIMITED_QUOTA.to_string()
    } else {
        info.quota.to_string()
    };
    let mut h = vec![
        (X_ACCOUNT_CONTAINER_COUNT.to_string(), info.container_count.to_string()),
        (X_ACCOUNT_BYTES_USED.to_string(), info.bytes.to_string()),
        (X_ACCOUNT_POLICY_QUOTA.to_string(), quota.clone()),
        (format!("{X_ACCOUNT_POLICY_QUOTA}-{account}"), quota),
        ("last-modified".to_string(), http_date(info.modified)),
    ];
    for (k, v) in &info.meta {
        h.push((format!("{ACCOUNT_META}{k}"), encode_header_value(v)));
    }
    for (g, members) in &info.groups {
        h.push((format!("{ACCOUNT_GROUP}{g}"), encode_header_value(&members.join(","))));
    }
    h
}

fn container_entry(c: &ContainerInfo, account: &str) -> ContainerEntry {
    ContainerEntry {
        name: c.name.clone(),
        count: c.count,
        bytes: c.bytes,
        last_modified: iso_micros(c.modified),
        x_container_policy: ContainerPolicy {
            quota: c.quota.to_string(),
            versioning: c.versioning.as_str().to_string(),
            project: account.to_string(),
        },
    }
}

async fn account_level(ctx: &Ctx, account: &str) -> ApiResult<Response> {
    let owner = ctx.is_owner(account);
    let acc = account.to_string();
    match ctx.method {
        Method::HEAD | Method::GET => {
            if !owner {
                return foreign_account_listing(ctx, account).await;
            }
            if ctx.query.until().is_some() {
                return Err(ApiError::bad_request("until is not supported by this server"));
            }
            let info = ctx.st.store.account_info(&acc).await?;
            let containers = ctx.st.store.list_containers(&acc).await?;
            let headers = account_headers(account, &info);
            if ctx.method == Method::HEAD {
                return Ok(reply(StatusCode::NO_CONTENT, headers, Body::empty()));
            }
            let limit = listing_limit(&ctx.query);
            let marker = ctx.query.get("marker").map(|s| s.to_string());
            let shared = ctx.query.has("shared");
            let public = ctx.query.has("public");
            let mut wanted = vec![];
            if shared || public {
                let paths = ctx.st.store.shared_paths(&acc).await?;
                for (c, _, sh) in paths {
                    if (shared || sh.is_public()) && !wanted.contains(&c) {
                        wanted.push(c);
                    }
                }
            }
            let list: Vec<&ContainerInfo> = containers
                .iter()
                .filter(|c| marker.as_deref().is_none_or(|m| c.name.as_str() > m))
                .filter(|c| !(shared || public) || wanted.contains(&c.name))
                .take(limit)
                .collect();
            let names = list.iter().map(|c| c.name.clone()).collect();
            let entries: Vec<_> = list.iter().map(|c| container_entry(c, account)).collect();
            Ok(text_or_json(
                ctx.query.wants_json(&ctx.headers),
                names,
                &entries,
                headers,
            ))
        }
        Method::POST => {
            if !owner {
                return Err(ApiError::forbidden("Not allowed"));
            }
            let meta = meta_headers(&ctx.headers, ACCOUNT_META)?;
            let update = ctx.query.has("update");
            let meta = match (meta, update) {
                (Some(m), true) => Some(MetaUpdate::Merge(m)),
                (Some(m), false) => Some(MetaUpdate::Replace(m)),
                (None, true) => None,
                (None, false) => Some(MetaUpdate::Replace(Default::default())),
            };
            let mut groups = crate::store::Meta::new();
            for (name, value) in ctx.headers.iter() {
                if let Some(g) = name.as_str().strip_prefix(ACCOUNT_GROUP) {
                    let v = value
                        .to_str()
                        .map_err(|_| ApiError::bad_request("Invalid group header"))?;
                    let v = decode_header_value(v).ok_or_else(|| ApiError::bad_request("Invalid group header"))?;
                    let members: Vec<String> = v
                        .split(',')
                        .map(|m| m.trim().to_lowercase())
                        .filter(|m| !m.is_empty())
                        .collect();
                    groups.insert(g.to_string(), members.join(","));
                }
            }
            let groups = if groups.is_empty() {
                None
            } else if update {
                Some(MetaUpdate::Merge(groups))
            } else {
                Some(MetaUpdate::Replace(groups))
            };
            ctx.st.store.update_account(&acc, meta, groups).await?;
            Ok(reply(StatusCode::ACCEPTED, vec![], Body::empty()))
        }
        _ => Err(ApiError::not_allowed("HEAD, GET, POST")),
    }
}

/// A listing's `limit`: at most a page, and a page when it is not a number (as the original
/// reads it).
fn listing_limit(q: &Query) -> usize {
    q.parse_num::<usize>("limit")
        .ok()
        .flatten()
        .unwrap_or(MAX_LISTING)
        .min(MAX_LISTING)
}

/// Another user's account: only the containers that hold something shared with the caller.
async fn foreign_account_listing(ctx: &Ctx, account: &str) -> ApiResult<Response> {
    let (s, me) = (&ctx.st.store, &ctx.user.uuid);
    let mut names: Vec<String> = vec![];
    for (c, _, sh) in s.shared_paths(account).await? {
        if sh.can_read(me) && !names.contains(&c) {
            names.push(c);
        }
    }
    let mut containers = vec![];
    for c in names {
        containers.push((s.container_info(account, &c).await?.modified, c));
    }
    if containers.is_empty() {
        return Err(ApiError::forbidden("Not allowed"));
    }
    if ctx.method == Method::HEAD {
        return Ok(reply(StatusCode::NO_CONTENT, vec![], Body::empty()));
    }
    let entries = named_entries(&containers);
    Ok(text_or_json(
        ctx.query.wants_json(&ctx.headers),
        containers.into_iter().map(|(_, c)| c).collect(),
        &entries,
        vec![],
    ))
}

fn container_headers(c: &ContainerInfo, account: &str) -> Vec<(String, String)> {
    let mut h = vec![
        (X_CONTAINER_OBJECT_COUNT.to_string(), c.count.to_string()),
        (X_CONTAINER_BYTES_USED.to_string(), c.bytes.to_string()),
        (X_CONTAINER_BLOCK_SIZE.to_string(), BLOCK_SIZE.to_string()),
        (X_CONTAINER_BLOCK_HASH.to_string(), BLOCK_HASH.to_string()),
        (X_CONTAINER_OBJECT_META.to_string(), c.object_meta_keys.join(",")),
        (
            X_CONTAINER_POLICY_VERSIONING.to_string(),
            c.versioning.as_str().to_string(),
        ),
        (X_CONTAINER_POLICY_QUOTA.to_string(), c.quota.to_string()),
        (X_CONTAINER_POLICY_PROJECT.to_string(), account.to_string()),
        ("last-modified".to_string(), http_date(c.modified)),
    ];
    for (k, v) in &c.meta {
        h.push((format!("{CONTAINER_META}{k}"), encode_header_value(v)));
    }
    h
}

/// What another user with something shared in the container learns of it: how to read its
/// objects, not its policy, usage or metadata.
/// (The original also names the container's object metadata keys; here they are withheld.)
fn reader_container_headers() -> Vec<(String, String)> {
    vec![
        (X_CONTAINER_BLOCK_SIZE.to_string(), BLOCK_SIZE.to_string()),
        (X_CONTAINER_BLOCK_HASH.to_string(), BLOCK_HASH.to_string()),
        (X_CONTAINER_OBJECT_META.to_string(), String::new()),
    ]
}

fn policy_update(h: &HeaderMap, update: bool) -> ApiResult<PolicyUpdate> {
    let mut p = PolicyUpdate::default();
    for (name, value) in h.iter() {
        let Some(key) = name.as_str().strip_prefix("x-container-policy-") else {
            continue;
        };
        let v = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Invalid policy value"))?
            .trim();
        match key {
            "versioning" => {
                p.versioning = Some(if v.is_empty() && update {
                    None
                } else {
                    Some(
                        Versioning::parse(&v.to_ascii_lowercase())
                            .ok_or_else(|| ApiError::bad_request("Invalid versioning policy"))?,
                    )
                })
            }
            "quota" => {
                p.quota = Some(if v.is_empty() && update {
                    None
                } else {
                    Some(v.parse().map_err(|_| ApiError::bad_request("Invalid quota policy"))?)
                })
            }
            // Projects are not modelled; every container is charged to its account.
            "project" => {}
            _ => return Err(ApiError::bad_request(format!("Invalid policy key {key}"))),
        }
    }
    Ok(p)
}

pub fn object_entry(o: &ObjectInfo, owner: bool, base: &str) -> ObjectEntry {
    ObjectEntry {
        name: o.name.clone(),
        bytes: o.size,
        content_type: o.content_type.clone(),
        hash: o.md5.clone().unwrap_or_default(),
        x_object_hash: o.merkle.clone(),
        x_object_uuid: o.uuid.clone(),
        x_object_version: o.version,
        x_object_version_timestamp: UnixTime(Some(o.version_ts)),
        last_modified: Some(iso_micros(o.version_ts)),
        x_object_modified_by: o.modified_by.clone(),
        x_object_sharing: if owner {
            o.sharing.as_ref().map(|s| s.to_string())
        } else {
            None
        },
        x_object_allowed_to: None,
        x_object_public: if owner {
            o.public_id.as_ref().map(|p| format!("{base}/public/{p}"))
        } else {
            None
        },
        available: 1,
        map_check_timestamp: None,
    }
}

async fn container_level(ctx: &Ctx, account: &str, container: &str, body: Body) -> ApiResult<Response> {
    let owner = ctx.is_owner(account);
    let (acc, cont) = (account.to_string(), container.to_string());
    match ctx.method {
        Method::HEAD | Method::GET => {
            if ctx.query.until().is_some() {
                return Err(ApiError::bad_request("until is not supported by this server"));
            }
            let info = ctx.st.store.container_info(&acc, &cont).await.map_err(ApiError::from);
            let info = match info {
                Ok(i) => i,
                Err(e) if !owner && e.status == StatusCode::NOT_FOUND => {
                    return Err(ApiError::forbidden("Not allowed"))
                }
                Err(e) => return Err(e),
            };
            let headers = if owner {
                container_headers(&info, account)
            } else {
                reader_container_headers()
            };
            if ctx.method == Method::HEAD {
                if !owner {
                    foreign_container_check(ctx, account, container).await?;
                }
                return Ok(reply(StatusCode::NO_CONTENT, headers, Body::empty()));
            }
            list_objects(ctx, account, container, owner, headers).await
        }
        Method::PUT => {
            if !owner {
                return Err(ApiError::forbidden("Not allowed"));
            }
            let policy = policy_update(&ctx.headers, false)?;
            let meta = meta_headers(&ctx.headers, CONTAINER_META)?.unwrap_or_default();
            let created = ctx.st.store.put_container(&acc, &cont, &policy, &meta).await?;
            Ok(reply(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::ACCEPTED
                },
                vec![],
                Body::empty(),
            ))
        }
        Method::POST => {
            if !owner {
                return Err(ApiError::forbidden("Not allowed"));
            }
            let update = ctx.query.has("update");
            let ctype = header(&ctx.headers, "content-type")?;
            if ctype.as_deref() == Some(OCTET_STREAM) {
                return block_upload(ctx, account, container, body).await;
            }
            let policy = policy_update(&ctx.headers, update)?;
            let meta = match (meta_headers(&ctx.headers, CONTAINER_META)?, update) {
                (Some(m), true) => Some(MetaUpdate::Merge(m)),
                (Some(m), false) => Some(MetaUpdate::Replace(m)),
                (None, true) => None,
                (None, false) => Some(MetaUpdate::Replace(Default::default())),
            };
            ctx.st.store.update_container(&acc, &cont, &policy, meta).await?;
            Ok(reply(StatusCode::ACCEPTED, vec![], Body::empty()))
        }
        Method::DELETE => {
            if !owner {
                return Err(ApiError::forbidden("Not allowed"));
            }
            if let Some(until) = ctx.query.until() {
                ctx.st.store.purge_container(&acc, &cont, until).await?;
                return Ok(reply(StatusCode::NO_CONTENT, vec![], Body::empty()));
            }
            let by = ctx.user.uuid.clone();
            if ctx.query.has("delimiter") {
                ctx.st.store.clear_container(&acc, &cont, &by).await?;
            } else {
                ctx.st.store.delete_container(&acc, &cont).await?;
            }
            Ok(reply(StatusCode::NO_CONTENT, vec![], Body::empty()))
        }
        _ => Err(ApiError::not_allowed("HEAD, GET, PUT, POST, DELETE")),
    }
}

async fn foreign_container_check(ctx: &Ctx, account: &str, container: &str) -> ApiResult<()> {
    let acc = account.to_string();
    let paths = ctx.st.store.shared_paths(&acc).await?;
    if paths
        .iter()
        .any(|(c, _, sh)| c == container && sh.can_read(&ctx.user.uuid))
    {
        Ok(())
    } else {
        Err(ApiError::forbidden("Not allowed"))
    }
}

async fn list_objects(
    ctx: &Ctx,
    account: &str,
    container: &str,
    owner: bool,
    headers: Vec<(String, String)>,
) -> ApiResult<Response> {
    let q = &ctx.query;
    let limit = listing_limit(q);
    let mut lq = ListQuery {
        limit,
        marker: q.get("marker").map(|s| s.to_string()),
        ..Default::default()
    };
    if let Some(p) = q.get("path") {
        lq.prefix = p.to_string();
        lq.path_mode = true;
    } else {
        lq.prefix = q.get("prefix").unwrap_or("").to_string();
        lq.delimiter = match q.get("delimiter") {
            None | Some("") => None,
            Some(d) => {
                let mut chars = d.chars();
                let c = chars.next();
                if chars.next().is_some() {
                    return Err(ApiError::bad_request("The delimiter must be one character"));
                }
                c
            }
        };
    }
    if q.has("meta") {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "meta filters are not supported by this server",
        ));
    }
    if q.has("public") && !owner {
        return Err(ApiError::forbidden("Not allowed"));
    }
    // Another user gets what the permission rule lets them read, a whole page of it: the
    // store filters before it counts.
    if !owner {
        lq.reader = Some(ctx.user.uuid.clone());
    }
    lq.only_shared = q.has("shared");
    lq.only_public = q.has("public");
    let (a, c) = (account.to_string(), container.to_string());
    let entries = ctx.st.store.list_objects(&a, &c, &lq).await?;
    let mut names = vec![];
    let mut json = vec![];
    for e in &entries {
        match e {
            Listed::Subdir(s) => {
                names.push(s.clone());
                json.push(ListingEntry::Subdir { subdir: s.clone() });
            }
            Listed::Object(o) => {
                names.push(o.name.clone());
                let mut entry = object_entry(o, owner, &ctx.base);
                if !owner {
                    entry.x_object_allowed_to = Some("read".to_string());
                }
                json.push(ListingEntry::Object(Box::new(entry)));
            }
        }
    }
    if !owner && names.is_empty() {
        foreign_container_check(ctx, account, container).await?;
    }
    Ok(text_or_json(q.wants_json(&ctx.headers), names, &json, headers))
}

/// Block upload: the body cut into blocks, stored, and their hashes returned in order.
async fn block_upload(ctx: &Ctx, account: &str, container: &str, body: Body) -> ApiResult<Response> {
    let (a, c) = (account.to_string(), container.to_string());
    ctx.st.store.container_info(&a, &c).await?;
    let ing =
        crate::server::data::ingest(&ctx.st, &ctx.user.uuid, body.into_data_stream(), MAX_BLOCK_POST, false).await?;
    Ok(reply(
        StatusCode::ACCEPTED,
        vec![("content-type".into(), "application/json; charset=UTF-8".into())],
        Body::from(serde_json::to_string(&ing.hashes).unwrap_or_default()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(parse_endpoint("").is_err());
        assert_eq!(parse_endpoint("/").unwrap(), Endpoint::Top);
        assert_eq!(
            parse_endpoint("/acc").unwrap(),
            Endpoint::Account { account: "acc".into() }
        );
        assert_eq!(
            parse_endpoint("/acc/").unwrap(),
            Endpoint::Account { account: "acc".into() }
        );
        assert_eq!(
            parse_endpoint("/acc/c/").unwrap(),
            Endpoint::Container {
                account: "acc".into(),
                container: "c".into()
            }
        );
        assert_eq!(
            parse_endpoint("/acc/c/a%20b/c.txt").unwrap(),
            Endpoint::Object {
                account: "acc".into(),
                container: "c".into(),
                object: "a b/c.txt".into()
            }
        );
        assert!(parse_endpoint("/acc/c/a/../b").is_err());
        assert!(parse_endpoint("/acc/c/a%2Fb").is_err());
        assert!(parse_endpoint("/acc/c/a%00b").is_err());
        assert!(parse_endpoint("/acc/c%2Fd").is_err());
        assert!(parse_endpoint(&format!("/acc/c/{}", "x".repeat(1025))).is_err());
        assert!(parse_endpoint(&format!("/acc/{}", "x".repeat(257))).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Any path and query a client sends: a 400 or an endpoint, never a panic; and what
        /// is accepted holds no control character, no `.`/`..` segment, no empty account.
        #[test]
        fn paths_and_queries_never_panic(
            path in proptest::prelude::prop_oneof![
                "(/[a-z%0-9.]{0,6}){0,5}/?",
                "/[ -~]{0,40}",
                proptest::prelude::any::<String>(),
            ],
            query in proptest::prelude::prop_oneof!["([a-z%0-9+]{0,5}=?[a-z%0-9+&=]{0,6}&?){0,4}", proptest::prelude::any::<String>()],
        ) {
            let _ = crate::server::request::Query::parse(Some(&query));
            match parse_endpoint(&path) {
                Ok(Endpoint::Object { account, container, object }) => {
                    for n in [&account, &container, &object] {
                        proptest::prop_assert!(!n.chars().any(char::is_control), "{path:?}");
                    }
                    proptest::prop_assert!(!account.is_empty() && !container.is_empty());
                    proptest::prop_assert!(!object.split('/').any(|s| s == "." || s == ".."));
                }
                Ok(Endpoint::Container { account, container }) => {
                    proptest::prop_assert!(!account.is_empty() && !container.contains('/'));
                }
                _ => {}
            }
        }
    }
}
