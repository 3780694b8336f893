//! Where a mount's account is and how to log in: the SOURCE argument (an identity URL or
//! `kamaki:CLOUD`), the token (file, environment, or kamaki's config), and the token exchange
//! that yields the account UUID and the service URLs.

use crate::api::astakos::{
    with_version, TokenReply, TokenRequest, IDENTITY_VERSION, IMAGE_VERSION, OBJECT_STORE_VERSION,
};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no token: give -o token_file=PATH, set IMGFS_TOKEN, or use a kamaki:CLOUD source")]
    NoToken,
    #[error("cannot read the token file {path}: {source}")]
    TokenFile { path: String, source: std::io::Error },
    #[error("kamaki config {path}: {message}")]
    Kamaki { path: String, message: String },
    #[error("cannot reach the identity service at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the certificate of {host} is not trusted (checked against {roots}): {reason}")]
    Certificate {
        host: String,
        roots: String,
        reason: String,
    },
    #[error("the identity service at {url} refused the token ({status})")]
    BadToken { url: String, status: u16 },
    #[error("the identity service at {url} answered {status}: {message}")]
    Identity { url: String, status: u16, message: String },
    #[error("the identity reply has no {0} service")]
    NoService(&'static str),
}

/// Where a mount logs in, as its SOURCE says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Source {
    pub identity_url: String,
    /// From kamaki's config, for `kamaki:` sources.
    pub token: Option<String>,
    /// kamaki's `ca_certs` (a global setting), for `kamaki:` sources.
    pub ca_certs: Option<String>,
}

/// An identity URL as given, or a `kamaki:CLOUD` looked up in kamaki's config.
pub fn resolve_source(source: &str, kamakirc: &Path) -> Result<Source, SessionError> {
    let Some(cloud) = source.strip_prefix("kamaki:") else {
        return Ok(Source {
            identity_url: source.to_string(),
            ..Default::default()
        });
    };
    let path = kamakirc.display().to_string();
    let text = std::fs::read_to_string(kamakirc).map_err(|e| SessionError::Kamaki {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let found = parse_kamakirc(&text, cloud);
    if found.identity_url.is_empty() {
        return Err(SessionError::Kamaki {
            path,
            message: format!("no url for cloud {cloud:?}"),
        });
    }
    Ok(found)
}

/// kamaki's config is INI-like: `[cloud "NAME"]` sections with `url = ...` and `token = ...`,
/// and a `[global]` section (`ca_certs = ...`). An absent url is left empty.
pub fn parse_kamakirc(text: &str, cloud: &str) -> Source {
    #[derive(PartialEq)]
    enum In {
        Global,
        Cloud,
        Other,
    }
    let mut section = In::Other;
    let mut out = Source::default();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            let inner = l.trim_matches(|c| c == '[' || c == ']').trim();
            let name = inner.strip_prefix("cloud").map(|r| r.trim().trim_matches('"'));
            section = match (inner, name) {
                ("global", _) => In::Global,
                (_, Some(n)) if n == cloud => In::Cloud,
                _ => In::Other,
            };
            continue;
        }
        let Some((k, v)) = l.split_once('=') else { continue };
        match (&section, k.trim()) {
            (In::Cloud, "url") => out.identity_url = v.trim().to_string(),
            // kamaki allows several space-separated tokens; the first is the default.
            (In::Cloud, "token") => out.token = v.split_whitespace().next().map(|t| t.to_string()),
            (In::Global, "ca_certs") => out.ca_certs = Some(v.trim().to_string()).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
    out
}

/// The token a client sends, and how to read it again when the server refuses it: a token
/// rotated into the same file (or kamaki's config) is picked up without a remount.
pub struct TokenCell {
    current: std::sync::RwLock<String>,
    reread: Option<Box<dyn Fn() -> Option<String> + Send + Sync>>,
}

impl TokenCell {
    pub fn fixed(token: &str) -> TokenCell {
        TokenCell {
            current: std::sync::RwLock::new(token.to_string()),
            reread: None,
        }
    }

    pub fn rereadable(token: &str, reread: impl Fn() -> Option<String> + Send + Sync + 'static) -> TokenCell {
        TokenCell {
            current: std::sync::RwLock::new(token.to_string()),
            reread: Some(Box::new(reread)),
        }
    }

    pub fn get(&self) -> String {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// After the server refused `used`: true when there is another token to try (read again
    /// from its source now, or by a request before this one).
    pub fn refresh(&self, used: &str) -> bool {
        let Some(reread) = &self.reread else { return false };
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if *cur != used {
            return true;
        }
        match reread() {
            Some(t) if t != used => {
                tracing::info!("the server refused the token; using the one its source holds now");
                *cur = t;
                true
            }
            _ => false,
        }
    }
}

/// Reads a token file; warns when others may read it.
pub fn read_token_file(path: &str) -> Result<String, SessionError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| SessionError::TokenFile {
        path: path.into(),
        source: e,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path, "the token file can be read by other users; chmod 600 it");
    }
    let t = std::fs::read_to_string(path).map_err(|e| SessionError::TokenFile {
        path: path.into(),
        source: e,
    })?;
    t.split_whitespace()
        .next()
        .map(|s| s.to_string())
        .ok_or(SessionError::NoToken)
}

/// An authenticated account.
#[derive(Debug, Clone)]
pub struct Account {
    pub uuid: String,
    pub user_name: String,
    pub object_store: String,
    pub image: Option<String>,
}

/// `POST <identity>/tokens`.
/// `roots` names the certificates `http` trusts, for the message when the server's is not.
pub async fn authenticate(
    http: &reqwest::Client,
    roots: &str,
    identity_url: &str,
    token: &str,
) -> Result<Account, SessionError> {
    let base = with_version(identity_url, IDENTITY_VERSION);
    let url = format!("{base}/tokens");
    let r = http
        .post(&url)
        .header(crate::api::pithos::X_AUTH_TOKEN, token)
        .json(&TokenRequest::with_token(token))
        .send()
        .await
        .map_err(|e| {
            let chain = crate::client::error_chain(&e);
            match crate::client::tls::certificate_problem(&chain) {
                Some(reason) => SessionError::Certificate {
                    host: reqwest::Url::parse(&url)
                        .ok()
                        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                        .unwrap_or_else(|| url.clone()),
                    roots: roots.to_string(),
                    reason,
                },
                None => SessionError::Unreachable {
                    url: url.clone(),
                    message: chain,
                },
            }
        })?;
    let status = r.status().as_u16();
    if status == 401 || status == 403 {
        return Err(SessionError::BadToken { url, status });
    }
    let body = r.bytes().await.map_err(|e| SessionError::Unreachable {
        url: url.clone(),
        message: e.to_string(),
    })?;
    if status != 200 {
        let message = crate::api::fault::parse_fault(&body)
            .map(|f| f.message)
            .unwrap_or_default();
        return Err(SessionError::Identity { url, status, message });
    }
    let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| SessionError::Identity {
        url: url.clone(),
        status,
        message: e.to_string(),
    })?;
    let object_store = reply
        .endpoint("object-store")
        .ok_or(SessionError::NoService("object-store"))?;
    Ok(Account {
        uuid: reply.access.user.id.clone(),
        user_name: reply.access.user.name.clone(),
        object_store: with_version(object_store, OBJECT_STORE_VERSION),
        image: reply.endpoint("image").map(|u| with_version(u, IMAGE_VERSION)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamakirc_sections() {
        let rc = "[global]\ndefault_cloud = a\nca_certs = /etc/ca.pem\n\n[cloud \"a\"]\nurl = http://x/identity/v2.0\ntoken = t1 t2\n[cloud \"b\"]\nurl = http://y\n";
        let ca = Some("/etc/ca.pem".to_string());
        assert_eq!(
            parse_kamakirc(rc, "a"),
            Source {
                identity_url: "http://x/identity/v2.0".into(),
                token: Some("t1".into()),
                ca_certs: ca.clone()
            }
        );
        let b = parse_kamakirc(rc, "b");
        assert_eq!((b.identity_url.as_str(), b.token), ("http://y", None));
        assert_eq!(parse_kamakirc(rc, "c").identity_url, "");
        assert_eq!(parse_kamakirc("[cloud \"a\"]\nurl = u\n", "a").ca_certs, None);
    }
}
