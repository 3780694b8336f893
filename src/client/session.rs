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
    #[error("the identity service at {url} refused the token ({status})")]
    BadToken { url: String, status: u16 },
    #[error("the identity service at {url} answered {status}: {message}")]
    Identity { url: String, status: u16, message: String },
    #[error("the identity reply has no {0} service")]
    NoService(&'static str),
}

/// The identity URL and, for `kamaki:` sources, the token from kamaki's config.
pub fn resolve_source(source: &str, kamakirc: &Path) -> Result<(String, Option<String>), SessionError> {
    let Some(cloud) = source.strip_prefix("kamaki:") else {
        return Ok((source.to_string(), None));
    };
    let path = kamakirc.display().to_string();
    let text = std::fs::read_to_string(kamakirc).map_err(|e| SessionError::Kamaki {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let (url, token) = parse_kamakirc(&text, cloud);
    let url = url.ok_or_else(|| SessionError::Kamaki {
        path: path.clone(),
        message: format!("no url for cloud {cloud:?}"),
    })?;
    Ok((url, token))
}

/// kamaki's config is INI-like: `[cloud "NAME"]` sections with `url = ...` and `token = ...`.
pub fn parse_kamakirc(text: &str, cloud: &str) -> (Option<String>, Option<String>) {
    let mut in_section = false;
    let (mut url, mut token) = (None, None);
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            let inner = l.trim_matches(|c| c == '[' || c == ']').trim();
            let name = inner.strip_prefix("cloud").map(|r| r.trim().trim_matches('"'));
            in_section = name == Some(cloud);
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            match k.trim() {
                "url" => url = Some(v.trim().to_string()),
                // kamaki allows several space-separated tokens; the first is the default.
                "token" => token = v.split_whitespace().next().map(|t| t.to_string()),
                _ => {}
            }
        }
    }
    (url, token)
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
pub async fn authenticate(http: &reqwest::Client, identity_url: &str, token: &str) -> Result<Account, SessionError> {
    let base = with_version(identity_url, IDENTITY_VERSION);
    let url = format!("{base}/tokens");
    let r = http
        .post(&url)
        .header(crate::api::pithos::X_AUTH_TOKEN, token)
        .json(&TokenRequest::with_token(token))
        .send()
        .await
        .map_err(|e| SessionError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
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
        let rc = "[global]\ndefault_cloud = a\n\n[cloud \"a\"]\nurl = http://x/identity/v2.0\ntoken = t1 t2\n[cloud \"b\"]\nurl = http://y\n";
        assert_eq!(
            parse_kamakirc(rc, "a"),
            (Some("http://x/identity/v2.0".into()), Some("t1".into()))
        );
        assert_eq!(parse_kamakirc(rc, "b"), (Some("http://y".into()), None));
        assert_eq!(parse_kamakirc(rc, "c"), (None, None));
    }
}
