//! Identity (spec/astakos.md): token authentication with the service catalog, user catalogs,
//! and Swift's auth v1 for Swift clients.

use crate::api::astakos::{token_reply, CatalogReply, CatalogRequest, TokenRequest};
use crate::server::error::{ApiError, ApiResult};
use crate::server::request::{base_url, header, Query};
use crate::server::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

const MAX_BODY: usize = 64 * 1024;

fn json_reply(v: impl serde::Serialize) -> Response {
    let mut r = Json(v).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

pub async fn tokens(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let base = base_url(&headers);
    if body.len() > MAX_BODY {
        return Err(ApiError::bad_request("Request body too large"));
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        // Public mode: the catalog alone.
        let full = token_reply(&base, "", "", "", "");
        return Ok(json_reply(
            json!({"access": {"serviceCatalog": full["access"]["serviceCatalog"]}}),
        ));
    }
    let req: TokenRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("Malformed request: {e}")))?;
    let token = req
        .token()
        .ok_or_else(|| ApiError::bad_request("Missing credentials"))?
        .to_string();
    // (the identity service's own fault, not the forwarded one the object store gives)
    let session = st
        .session_or(token.clone(), || ApiError::unauthorized("Invalid token"))
        .await?;
    let user = &session.user;
    if let Some(pc) = &req.auth.password_credentials {
        if pc.username != user.uuid {
            return Err(ApiError::unauthorized("Invalid token"));
        }
    }
    if let Some(t) = &req.auth.tenant_name {
        if t != &user.uuid {
            return Err(ApiError::bad_request("Not conforming tenantName"));
        }
    }
    Ok(json_reply(token_reply(
        &base,
        &token,
        &user.uuid,
        &user.name,
        &crate::api::timefmt::iso_micros(session.expires),
    )))
}

pub async fn user_catalogs(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    st.authenticate(&headers, &Query::default()).await?;
    if body.len() > MAX_BODY {
        return Err(ApiError::bad_request("Request body too large"));
    }
    let req: CatalogRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("Malformed request: {e}")))?;
    let mut reply = CatalogReply::default();
    for u in &req.uuids {
        if let Some(user) = st.store.user_by_uuid(u).await? {
            reply.uuid_catalog.insert(user.uuid, user.name);
        }
    }
    for n in &req.displaynames {
        if let Some(user) = st.store.user_by_name(n).await? {
            reply.displayname_catalog.insert(user.name, user.uuid);
        }
    }
    Ok(json_reply(reply))
}

/// Swift auth v1: `X-Auth-User` (name, uuid or `account:user`) and `X-Auth-Key` (the token).
pub async fn swift_auth(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    use crate::api::astakos::swift::*;
    let user = match header(&headers, AUTH_USER)? {
        Some(u) => Some(u),
        None => header(&headers, STORAGE_USER)?,
    };
    let key = match header(&headers, AUTH_KEY)? {
        Some(k) => Some(k),
        None => header(&headers, STORAGE_PASS)?,
    };
    let (Some(user), Some(key)) = (user, key) else {
        return Err(ApiError::unauthorized("X-Auth-User and X-Auth-Key are required"));
    };
    let names: Vec<String> = match user.split_once(':') {
        Some((a, u)) => vec![a.to_string(), u.to_string()],
        None => vec![user.clone()],
    };
    let session = st
        .session_or(key.clone(), || ApiError::unauthorized("Invalid credentials"))
        .await?;
    let found = &session.user;
    if !names.iter().all(|n| *n == found.name || *n == found.uuid) {
        return Err(ApiError::unauthorized("Invalid credentials"));
    }
    let url = format!(
        "{}{}/{}",
        base_url(&headers),
        crate::api::astakos::OBJECT_STORE_PATH,
        found.uuid
    );
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    let v = |s: &str| HeaderValue::from_str(s).map_err(|_| ApiError::bad_request("Invalid header value"));
    h.insert(STORAGE_URL, v(&url)?);
    h.insert(AUTH_TOKEN, v(&key)?);
    h.insert(STORAGE_TOKEN, v(&key)?);
    // Seconds the token has left.
    let left = (session.expires - crate::api::timefmt::now_micros()).max(0) / 1_000_000;
    h.insert(AUTH_TOKEN_EXPIRES, v(&left.to_string())?);
    Ok(r)
}
