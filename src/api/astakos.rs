//! Astakos identity wire shapes (spec/astakos.md): the token request and reply with its
//! service catalog, and the user catalog lookups.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const IDENTITY_PATH: &str = "/identity/v2.0";
pub const ACCOUNT_PATH: &str = "/account/v1.0";
pub const OBJECT_STORE_PATH: &str = "/object-store/v1";
pub const IMAGE_PATH: &str = "/image/v1.0";
/// What the catalog gives for the image service (the original gives it without a version).
pub const IMAGE_ROOT: &str = "/image";
pub const UI_PATH: &str = "/ui";

/// Swift auth v1 (spec/astakos.md §6): request headers (and the alternatives some clients
/// send) and reply headers.
pub mod swift {
    pub const AUTH_USER: &str = "x-auth-user";
    pub const AUTH_KEY: &str = "x-auth-key";
    pub const STORAGE_USER: &str = "x-storage-user";
    pub const STORAGE_PASS: &str = "x-storage-pass";
    pub const STORAGE_URL: &str = "x-storage-url";
    pub const AUTH_TOKEN: &str = "x-auth-token";
    pub const STORAGE_TOKEN: &str = "x-storage-token";
    pub const AUTH_TOKEN_EXPIRES: &str = "x-auth-token-expires";
}

/// `{"auth": {"token": {"id": ...}}}` or `{"auth": {"passwordCredentials": {...}}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub auth: AuthBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AuthBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenId>,
    #[serde(default, rename = "passwordCredentials", skip_serializing_if = "Option::is_none")]
    pub password_credentials: Option<PasswordCredentials>,
    #[serde(default, rename = "tenantName", skip_serializing_if = "Option::is_none")]
    pub tenant_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenId {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordCredentials {
    pub username: String,
    pub password: String,
}

impl TokenRequest {
    pub fn with_token(token: &str) -> TokenRequest {
        TokenRequest {
            auth: AuthBody {
                token: Some(TokenId { id: token.to_string() }),
                ..Default::default()
            },
        }
    }

    /// The token this request presents, whichever form it uses.
    pub fn token(&self) -> Option<&str> {
        if let Some(t) = &self.auth.token {
            return Some(&t.id);
        }
        self.auth.password_credentials.as_ref().map(|p| p.password.as_str())
    }
}

/// The parts of the token reply a client reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReply {
    pub access: Access,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Access {
    pub user: AccessUser,
    #[serde(rename = "serviceCatalog")]
    pub service_catalog: Vec<Service>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessUser {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(rename = "publicURL")]
    pub public_url: String,
}

/// A service URL as kamaki uses it: without trailing slashes, and with `/v<default>`
/// appended when it does not end in a version (`…/v1`, `…/v1.0`, `…/v2.`). The original's
/// catalog gives the image service as `…/cyclades/image`, meant as `…/cyclades/image/v1.0`.
pub fn with_version(url: &str, default: &str) -> String {
    let url = url.trim_end_matches('/');
    let last = url.rsplit('/').next().unwrap_or("");
    let versioned = last.strip_prefix('v').is_some_and(|v| {
        let (major, minor) = v.split_once('.').unwrap_or((v, ""));
        !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) && minor.bytes().all(|b| b.is_ascii_digit())
    });
    if versioned {
        url.to_string()
    } else {
        format!("{url}/v{default}")
    }
}

/// Default API versions, kamaki 0.16's (`DEFAULT_API_VERSION` of its clients).
pub const IDENTITY_VERSION: &str = "2.0";
pub const OBJECT_STORE_VERSION: &str = "1";
pub const IMAGE_VERSION: &str = "1.0";

impl TokenReply {
    /// The public URL of the service of type `kind`.
    pub fn endpoint(&self, kind: &str) -> Option<&str> {
        self.access
            .service_catalog
            .iter()
            .find(|s| s.kind.eq_ignore_ascii_case(kind))
            .and_then(|s| s.endpoints.first())
            .map(|e| e.public_url.as_str())
    }
}

/// The full token reply of `POST /identity/v2.0/tokens`, URLs rooted at `base`
/// (`http://host:port`).
/// `expires`: the token's expiry, ISO 8601 (`2026-12-31T00:00:00.000000+00:00`).
pub fn token_reply(base: &str, token: &str, uuid: &str, name: &str, expires: &str) -> Value {
    // As the original's catalog: the image service without its version (clients append it,
    // `with_version`), which `SNF:exposeVersion` says.
    let ep = |version: &str, path: &str| {
        let versioned = path.ends_with(version);
        json!([{"versionId": version, "publicURL": format!("{base}{path}"),
                "SNF:uiURL": format!("{base}{UI_PATH}"), "region": "default",
                "SNF:exposeVersion": if versioned { "True" } else { "False" }}])
    };
    json!({"access": {
    "token": {"id": token, "expires": expires,
              "tenant": {"id": uuid, "name": name}},
    "user": {"id": uuid, "name": name, "roles": [], "roles_links": [], "projects": [uuid]},
    "serviceCatalog": [
        {"name": "astakos_account", "type": "account", "endpoints_links": [], "endpoints": ep("v1.0", ACCOUNT_PATH)},
        {"name": "astakos_identity", "type": "identity", "endpoints_links": [], "endpoints": ep("v2.0", IDENTITY_PATH)},
        {"name": "pithos_object-store", "type": "object-store", "endpoints_links": [], "endpoints": ep("v1", OBJECT_STORE_PATH)},
        {"name": "cyclades_plankton", "type": "image", "endpoints_links": [], "endpoints": ep("v1.0", IMAGE_ROOT)}
    ]}})
}

/// `POST /account/v1.0/user_catalogs` body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CatalogRequest {
    #[serde(default)]
    pub uuids: Vec<String>,
    #[serde(default)]
    pub displaynames: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CatalogReply {
    pub uuid_catalog: BTreeMap<String, String>,
    pub displayname_catalog: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_has_what_kamaki_needs() {
        let v = token_reply("http://h:1", "tok", "u", "alice", "2099-01-01T00:00:00.000000+00:00");
        let r: TokenReply = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.endpoint("object-store"), Some("http://h:1/object-store/v1"));
        assert_eq!(r.endpoint("IMAGE"), Some("http://h:1/image"));
        assert_eq!(
            with_version(r.endpoint("image").unwrap(), IMAGE_VERSION),
            "http://h:1/image/v1.0"
        );
        assert_eq!(v["access"]["token"]["id"], "tok");
        let acc = &v["access"]["serviceCatalog"][0];
        assert_eq!(acc["name"], "astakos_account");
        assert_eq!(acc["endpoints"][0]["versionId"], "v1.0");
        assert!(acc["endpoints"][0]["SNF:uiURL"].is_string());
    }

    #[test]
    fn service_urls_as_kamaki_reads_them() {
        for (url, want) in [
            ("http://h/cyclades/image", "http://h/cyclades/image/v1.0"),
            ("http://h/cyclades/image/", "http://h/cyclades/image/v1.0"),
            ("http://h/image/v1.0", "http://h/image/v1.0"),
            ("http://h/image/v1.0//", "http://h/image/v1.0"),
            ("http://h/image/v2", "http://h/image/v2"),
            ("http://h/image/v2.", "http://h/image/v2."),
            ("http://h/image/vx", "http://h/image/vx/v1.0"),
            ("http://h/image/v", "http://h/image/v/v1.0"),
            ("http://h/image/v1.0a", "http://h/image/v1.0a/v1.0"),
        ] {
            assert_eq!(with_version(url, IMAGE_VERSION), want, "{url}");
        }
    }

    #[test]
    fn token_forms() {
        let r: TokenRequest = serde_json::from_str(r#"{"auth": {"token": {"id": "tokA"}}}"#).unwrap();
        assert_eq!(r.token(), Some("tokA"));
        let r: TokenRequest =
            serde_json::from_str(r#"{"auth": {"passwordCredentials": {"username": "u", "password": "p"}}}"#).unwrap();
        assert_eq!(r.token(), Some("p"));
    }
}
