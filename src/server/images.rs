//! Plankton, the image registry (spec/plankton.md). An image is an object whose `plankton`
//! metadata domain holds a name; its id is the object's UUID and `is_public` is `*` in the
//! object's read permissions.

use crate::api::pithos::Sharing;
use crate::api::plankton::{self, stored, Image, MetaHeaders};
use crate::api::timefmt::{now_micros, parse_unix_string};
use crate::server::error::{ApiError, ApiResult};
use crate::server::pithos::reply;
use crate::server::request::Query;
use crate::server::AppState;
use crate::store::{Meta, ObjectInfo, ObjectPath, User};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

const MAX_BODY: usize = 1 << 20;

/// The image an object is, if it carries image metadata.
pub fn image_of(o: &ObjectInfo) -> Option<Image> {
    let name = o.image.get(stored::NAME)?.clone();
    let properties = o
        .image
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(stored::PROPERTY_PREFIX)
                .map(|p| (p.to_string(), v.clone()))
        })
        .collect();
    Some(Image {
        id: o.uuid.clone(),
        name,
        location: plankton::location(&o.account, &o.container, &o.name),
        owner: o.account.clone(),
        size: o.size,
        checksum: o.merkle.clone(),
        disk_format: o
            .image
            .get(stored::DISK_FORMAT)
            .cloned()
            .unwrap_or_else(|| plankton::DEFAULT_DISK_FORMAT.into()),
        container_format: o
            .image
            .get(stored::CONTAINER_FORMAT)
            .cloned()
            .unwrap_or_else(|| plankton::DEFAULT_CONTAINER_FORMAT.into()),
        status: o
            .image
            .get(stored::STATUS)
            .cloned()
            .unwrap_or_else(|| "AVAILABLE".into()),
        is_public: o.sharing.as_ref().is_some_and(|s| s.is_public()),
        created_at: o
            .image
            .get(stored::CREATED_AT)
            .and_then(|t| parse_unix_string(t))
            .unwrap_or(o.version_ts),
        updated_at: o.version_ts,
        properties,
    })
}

fn can_see(o: &ObjectInfo, user: &str) -> bool {
    o.account == user || o.sharing.as_ref().is_some_and(|s| s.can_read(user))
}

fn image_reply(status: StatusCode, img: &Image) -> Response {
    let mut h = img.headers();
    h.push(("content-type".into(), "application/json; charset=UTF-8".into()));
    reply(status, h, Body::empty())
}

fn json_reply(status: StatusCode, v: impl serde::Serialize) -> Response {
    reply(
        status,
        vec![("content-type".into(), "application/json; charset=UTF-8".into())],
        Body::from(serde_json::to_string(&v).unwrap_or_default()),
    )
}

pub async fn handle(State(st): State<AppState>, req: Request) -> Response {
    let mut r = match handle_inner(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // (every answer of the original's registry says JSON, with a body or without)
    r.headers_mut()
        .entry(axum::http::header::CONTENT_TYPE)
        .or_insert(axum::http::HeaderValue::from_static("application/json; charset=UTF-8"));
    r
}

async fn handle_inner(st: AppState, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query())?;
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/image/v1.0")
        .or_else(|| path.strip_prefix("/image/v1"))
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let user = st.authenticate(&parts.headers, &query).await?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let valid_id = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    let m = parts.method.clone();
    let h = &parts.headers;
    match segs.as_slice() {
        ["images"] if m == Method::GET => list(&st, &user, &query, false).await,
        ["images"] if m == Method::POST => register(&st, &user, h).await,
        ["images"] => Err(ApiError::not_allowed("GET, POST")),
        ["images", "detail"] if m == Method::GET => list(&st, &user, &query, true).await,
        ["images", id] if valid_id(id) => match m {
            Method::HEAD => {
                let o = visible_image(&st, &user, id).await?;
                Ok(image_reply(StatusCode::OK, &image_of(&o).expect("checked image")))
            }
            Method::GET => {
                visible_image(&st, &user, id).await?;
                Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "Image data is read through the object store",
                ))
            }
            Method::PUT => update(&st, &user, id, h).await,
            Method::DELETE => unregister(&st, &user, id).await,
            _ => Err(ApiError::not_allowed("HEAD, GET, PUT, DELETE")),
        },
        ["images", id, "members"] if valid_id(id) => match m {
            Method::GET => {
                let o = visible_image(&st, &user, id).await?;
                let members = o
                    .sharing
                    .map(|s| {
                        s.read
                            .into_iter()
                            .chain(s.write)
                            .filter(|m| m != "*")
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                Ok(json_reply(
                    StatusCode::OK,
                    plankton::Members {
                        members: members
                            .into_iter()
                            .map(|m| plankton::Member {
                                member_id: m,
                                can_share: false,
                            })
                            .collect(),
                    },
                ))
            }
            Method::PUT => {
                let bytes = axum::body::to_bytes(body, MAX_BODY)
                    .await
                    .map_err(|_| ApiError::bad_request("Body too large"))?;
                let ms: plankton::Memberships = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::bad_request(format!("Malformed request: {e}")))?;
                let mut ids = Vec::with_capacity(ms.memberships.len());
                for m in &ms.memberships {
                    ids.push(member_account(&st, &m.member_id).await?);
                }
                change_members(&st, &user, id, move |s, owner| {
                    let public = s.is_public();
                    let mut read = vec![owner.to_string()];
                    read.extend(ids.iter().filter(|m| *m != owner).cloned());
                    if public {
                        read.push("*".into());
                    }
                    Sharing { read, write: vec![] }
                })
                .await
            }
            _ => Err(ApiError::not_allowed("GET, PUT")),
        },
        ["images", id, "members", member] if valid_id(id) => {
            let member = match m {
                // (one who is no member any more may be named as stored)
                Method::DELETE => member.to_lowercase(),
                _ => member_account(&st, member).await?,
            };
            match m {
                Method::PUT => {
                    change_members(&st, &user, id, move |s, _| {
                        let mut s = s.clone();
                        if !s.read.contains(&member) {
                            s.read.push(member.clone());
                        }
                        s
                    })
                    .await
                }
                Method::DELETE => {
                    change_members(&st, &user, id, move |s, _| {
                        let mut s = s.clone();
                        s.read.retain(|m| *m != member);
                        s.write.retain(|m| *m != member);
                        s
                    })
                    .await
                }
                _ => Err(ApiError::not_allowed("PUT, DELETE")),
            }
        }
        ["shared-images", member] if m == Method::GET => {
            let member = member.to_string();
            let me = user.uuid.clone();
            let all = st.store.list_images(&me, None).await?;
            let list: Vec<plankton::SharedImage> = all
                .iter()
                .filter(|o| {
                    o.account == member && can_see(o, &me) && !o.sharing.as_ref().is_some_and(|s| s.is_public())
                })
                .map(|o| plankton::SharedImage {
                    image_id: o.uuid.clone(),
                    can_share: false,
                })
                .collect();
            Ok(json_reply(
                StatusCode::OK,
                plankton::SharedImages { shared_images: list },
            ))
        }
        [] | ["versions"] if m == Method::GET => Ok(json_reply(
            StatusCode::OK,
            serde_json::json!({"versions": [{"status": "CURRENT", "id": "v1.0"}]}),
        )),
        _ => Err(ApiError::bad_request("API endpoint not found")),
    }
}

/// A member id of a membership request as the account it names: an account's UUID or a
/// user's name (stored as the UUID). Anything else is refused: a member id goes into the
/// object's sharing list, where `x;write=*` would be a clause of its own.
async fn member_account(st: &AppState, member: &str) -> ApiResult<String> {
    let member = percent_encoding::percent_decode_str(member)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("Invalid member id"))?
        .trim()
        .to_string();
    if !crate::api::pithos::valid_member(&member) || member == "*" {
        return Err(ApiError::bad_request(format!("Invalid member id '{member}'")));
    }
    let found = match st.store.user_by_uuid(&member.to_lowercase()).await? {
        Some(u) => Some(u),
        None => st.store.user_by_name(&member).await?,
    };
    found
        .map(|u| u.uuid)
        .ok_or_else(|| ApiError::bad_request(format!("Unknown member '{member}'")))
}

/// The image with this id, if the caller may see it: 404 if there is none, 403 if it is not
/// theirs and not shared with them.
async fn visible_image(st: &AppState, user: &User, id: &str) -> ApiResult<ObjectInfo> {
    let id = id.to_string();
    let o = st.store.object_by_uuid(&id).await?;
    let o = o
        .filter(|o| image_of(o).is_some())
        .ok_or_else(|| ApiError::not_found("Image not found"))?;
    if !can_see(&o, &user.uuid) {
        return Err(ApiError::forbidden("Not allowed"));
    }
    Ok(o)
}

async fn owned_image(st: &AppState, user: &User, id: &str) -> ApiResult<ObjectInfo> {
    let o = visible_image(st, user, id).await?;
    if o.account != user.uuid {
        return Err(ApiError::forbidden("Only the image owner may do this"));
    }
    Ok(o)
}

async fn change_members(
    st: &AppState,
    user: &User,
    id: &str,
    f: impl FnOnce(&Sharing, &str) -> Sharing + Send + 'static,
) -> ApiResult<Response> {
    let o = owned_image(st, user, id).await?;
    let new = f(&o.sharing.clone().unwrap_or_default(), &o.account);
    let p = ObjectPath::new(&o.account, &o.container, &o.name);
    st.store.set_permissions(&p, Some(&new), None).await?;
    Ok(reply(StatusCode::NO_CONTENT, vec![], Body::empty()))
}

async fn list(st: &AppState, user: &User, q: &Query, detail: bool) -> ApiResult<Response> {
    let sort_key = q.get("sort_key").unwrap_or("created_at").to_string();
    if ![
        "id",
        "name",
        "status",
        "size",
        "disk_format",
        "container_format",
        "created_at",
        "updated_at",
    ]
    .contains(&sort_key.as_str())
    {
        return Err(ApiError::bad_request("Invalid sort_key"));
    }
    let desc = match q.get("sort_dir").unwrap_or("desc") {
        "asc" => false,
        "desc" => true,
        _ => return Err(ApiError::bad_request("Invalid sort_dir")),
    };
    let size_min: Option<u64> = q
        .parse_num("size_min")
        .map_err(|_| ApiError::bad_request("Malformed request."))?;
    let size_max: Option<u64> = q
        .parse_num("size_max")
        .map_err(|_| ApiError::bad_request("Malformed request."))?;
    let me = user.uuid.clone();
    let all = st.store.list_images(&me, q.get("name")).await?;
    let mut images: Vec<Image> = all.iter().filter(|o| can_see(o, &me)).filter_map(image_of).collect();
    let eq = |field: &str, v: &str| q.get(field).is_none_or(|want| want == v);
    images.retain(|i| {
        eq("name", &i.name)
            && eq("container_format", &i.container_format)
            && eq("disk_format", &i.disk_format)
            && eq("status", &i.status)
            && eq("owner", &i.owner)
            && q.get("is_public")
                .is_none_or(|p| plankton::parse_bool(p) == i.is_public)
            && size_min.is_none_or(|m| i.size >= m)
            && size_max.is_none_or(|m| i.size <= m)
    });
    images.sort_by(|a, b| {
        let o = match sort_key.as_str() {
            "id" => a.id.cmp(&b.id),
            "name" => a.name.cmp(&b.name),
            "status" => a.status.cmp(&b.status),
            "size" => a.size.cmp(&b.size),
            "disk_format" => a.disk_format.cmp(&b.disk_format),
            "container_format" => a.container_format.cmp(&b.container_format),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            _ => a.created_at.cmp(&b.created_at),
        };
        let o = o.then_with(|| a.id.cmp(&b.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    Ok(if detail {
        json_reply(StatusCode::OK, images.iter().map(|i| i.detail()).collect::<Vec<_>>())
    } else {
        json_reply(StatusCode::OK, images.iter().map(|i| i.short()).collect::<Vec<_>>())
    })
}

fn check_formats(h: &MetaHeaders) -> ApiResult<()> {
    if let Some(f) = h.field("disk_format") {
        if !plankton::DISK_FORMATS.contains(&f) {
            return Err(ApiError::bad_request(format!("Invalid disk format '{f}'")));
        }
    }
    if let Some(f) = h.field("container_format") {
        if !plankton::CONTAINER_FORMATS.contains(&f) {
            return Err(ApiError::bad_request(format!("Invalid container format '{f}'")));
        }
    }
    Ok(())
}

/// Chooses each property's value: where kamaki sent a key twice, the value that differs from
/// the stored one wins (spec/plankton.md gotcha 5).
fn resolve_properties(h: &MetaHeaders, stored: &Meta) -> ApiResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, values) in &h.properties {
        let old = stored.get(&format!("{}{k}", stored::PROPERTY_PREFIX));
        let v = values
            .iter()
            .find(|v| Some(*v) != old)
            .or(values.last())
            .cloned()
            .unwrap_or_default();
        if k.is_empty() || k.len() > plankton::MAX_KEY {
            return Err(ApiError::bad_request(format!("Invalid property key '{k}'")));
        }
        if v.len() > plankton::MAX_VALUE {
            return Err(ApiError::bad_request(format!("Property value too long for '{k}'")));
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

/// The image domain after a register or update: the stored items with `fields` set and
/// `props` merged in, a property with an empty value deleted (as the original's Pithos
/// backend merges a domain's metadata: keys not sent are kept).
fn merge_meta(cur: &Meta, fields: &[(&str, Option<String>)], props: &BTreeMap<String, String>) -> ApiResult<Meta> {
    let mut m = cur.clone();
    for (k, v) in fields {
        if let Some(v) = v {
            if v.len() > plankton::MAX_VALUE {
                return Err(ApiError::bad_request(format!("Value too long for '{k}'")));
            }
            m.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in props {
        let key = format!("{}{k}", stored::PROPERTY_PREFIX);
        if v.is_empty() {
            m.remove(&key);
        } else {
            m.insert(key, v.clone());
        }
    }
    if m.len() > plankton::MAX_ITEMS {
        return Err(ApiError::bad_request("Too many image properties"));
    }
    Ok(m)
}

async fn register(st: &AppState, user: &User, headers: &HeaderMap) -> ApiResult<Response> {
    let h = MetaHeaders::parse(
        headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if h.fields.contains_key("id") {
        return Err(ApiError::bad_request("Passing an ID is not supported"));
    }
    if let Some(s) = h.field("store") {
        if s != "pithos" {
            return Err(ApiError::bad_request(format!("Invalid store type '{s}'")));
        }
    }
    check_formats(&h)?;
    let name = h
        .field("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Image 'name' parameter is required"))?
        .to_string();
    let loc = h
        .field("location")
        .ok_or_else(|| ApiError::bad_request("'location' parameter is required"))?;
    let (acc, cont, path) =
        plankton::parse_location(loc).ok_or_else(|| ApiError::bad_request(format!("Invalid location '{loc}'")))?;
    let p = ObjectPath::new(&acc, &cont, &path);
    let o = st.store.object_info(&p, None).await?;
    if o.account != user.uuid {
        let readable = o.sharing.as_ref().is_some_and(|s| s.can_read(&user.uuid));
        return Err(ApiError::forbidden(if readable {
            "Only the owner may register an image"
        } else {
            "Not allowed"
        }));
    }
    if let Some(size) = h.field("size") {
        if size.trim().parse::<u64>().ok() != Some(o.size) {
            return Err(ApiError::bad_request("Invalid 'size' field"));
        }
    }
    if let Some(sum) = h.field("checksum") {
        if !sum.trim().eq_ignore_ascii_case(&o.merkle) {
            return Err(ApiError::bad_request("Invalid checksum field"));
        }
    }
    let public = h.field("is_public").is_some_and(plankton::parse_bool);
    let props = resolve_properties(&h, &o.image)?;
    let meta = merge_meta(
        &o.image,
        &[
            (stored::NAME, Some(name)),
            (
                stored::DISK_FORMAT,
                Some(
                    h.field("disk_format")
                        .unwrap_or(plankton::DEFAULT_DISK_FORMAT)
                        .to_string(),
                ),
            ),
            (
                stored::CONTAINER_FORMAT,
                Some(
                    h.field("container_format")
                        .unwrap_or(plankton::DEFAULT_CONTAINER_FORMAT)
                        .to_string(),
                ),
            ),
            (stored::CREATED_AT, Some(crate::api::timefmt::unix_string(now_micros()))),
        ],
        &props,
    )?;
    let mut read = vec![o.account.clone()];
    if public {
        read.push("*".into());
    }
    let sharing = Sharing { read, write: vec![] };
    let o = st.store.set_image_meta(&p, &meta, Some(&sharing), &user.uuid).await?;
    Ok(image_reply(StatusCode::OK, &image_of(&o).expect("just registered")))
}

async fn update(st: &AppState, user: &User, id: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let o = owned_image(st, user, id).await?;
    let h = MetaHeaders::parse(
        headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for k in h.fields.keys() {
        if ![
            "name",
            "disk_format",
            "container_format",
            "is_public",
            "owner",
            "status",
        ]
        .contains(&k.as_str())
        {
            return Err(ApiError::bad_request(format!("Invalid metadata '{k}'")));
        }
    }
    // kamaki 0.11 sends empty formats/status for "unchanged".
    let field = |k: &str| h.field(k).filter(|v| !v.is_empty()).map(str::to_string);
    check_formats(&MetaHeaders {
        fields: ["disk_format", "container_format"]
            .iter()
            .filter_map(|k| field(k).map(|v| (k.to_string(), vec![v])))
            .collect(),
        properties: Default::default(),
    })?;
    let props = resolve_properties(&h, &o.image)?;
    let meta = merge_meta(
        &o.image,
        &[
            (stored::NAME, field("name")),
            (stored::DISK_FORMAT, field("disk_format")),
            (stored::CONTAINER_FORMAT, field("container_format")),
            (stored::STATUS, field("status").map(|s| s.to_uppercase())),
        ],
        &props,
    )?;
    let sharing = h.field("is_public").map(|v| {
        let mut s = o.sharing.clone().unwrap_or_default();
        s.read.retain(|m| m != "*");
        if plankton::parse_bool(v) {
            s.read.push("*".into());
        }
        s
    });
    let p = ObjectPath::new(&o.account, &o.container, &o.name);
    let o = st.store.set_image_meta(&p, &meta, sharing.as_ref(), &user.uuid).await?;
    Ok(image_reply(StatusCode::OK, &image_of(&o).expect("still registered")))
}

async fn unregister(st: &AppState, user: &User, id: &str) -> ApiResult<Response> {
    let o = owned_image(st, user, id).await?;
    let p = ObjectPath::new(&o.account, &o.container, &o.name);
    st.store.set_image_meta(&p, &Meta::new(), None, &user.uuid).await?;
    Ok(reply(StatusCode::NO_CONTENT, vec![], Body::empty()))
}
