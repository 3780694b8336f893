//! [`Storage`] over the Pithos+ HTTP API (spec/pithos.md §14's client recipes), with bounded
//! retries and backoff for server errors and connection failures. Every failure carries the
//! request, the status and the server's reason.

use super::*;
use crate::api::fault::parse_fault;
use crate::api::hashing::BlockHash;
use crate::api::pithos::{self, encode_path, ContainerEntry, Hashmap, HashmapPut};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::time::Duration;

/// Attempts of one request when the server fails (5xx) or cannot be reached.
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct PithosClient {
    pub(super) http: reqwest::Client,
    /// `<object-store>/<account>`
    pub(super) base: String,
    pub(super) token: std::sync::Arc<crate::client::session::TokenCell>,
    pub(super) account: String,
    /// The image registry's endpoint, when the cloud has one.
    pub(super) images: Option<String>,
}

/// How long a request may wait for the server's next bytes, by default.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A reqwest client (rustls with `ring`) that checks servers' certificates against `roots`.
/// A server that stops sending for `io_timeout` (or takes as long to accept a connection, up
/// to 10 s) fails that attempt, which is retried like any network error: a server that hangs
/// costs a caller about `ATTEMPTS` times `io_timeout`, then EIO, never a call that waits forever.
pub fn http_client(roots: crate::client::tls::Roots, io_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(roots.client_config())
        .pool_max_idle_per_host(16)
        // (below imgfs serve's 20 s of kept-alive idleness, so that a pooled connection is
        // not reused just as the server closes it)
        .pool_idle_timeout(Duration::from_secs(15))
        .connect_timeout(io_timeout.min(Duration::from_secs(10)))
        .read_timeout(io_timeout)
        // (a 4 MiB block at 14 KB/s; a trickle that never stops is cut here)
        .timeout(Duration::from_secs(300).max(io_timeout))
        .build()
        .expect("HTTP client")
}

impl PithosClient {
    pub fn new(http: reqwest::Client, object_store: &str, account: &str, token: &str) -> PithosClient {
        PithosClient {
            http,
            base: format!("{}/{}", object_store.trim_end_matches('/'), encode_path(account)),
            token: std::sync::Arc::new(crate::client::session::TokenCell::fixed(token)),
            account: account.into(),
            images: None,
        }
    }

    /// Send the token `cell` holds (read again from its source after a 401).
    pub fn with_token(mut self, cell: crate::client::session::TokenCell) -> PithosClient {
        self.token = std::sync::Arc::new(cell);
        self
    }

    /// Also speak to the image registry at `url` (see [`crate::client::Registry`]).
    pub fn with_images(mut self, url: Option<String>) -> PithosClient {
        self.images = url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    pub(super) fn url(&self, container: &str, name: &str) -> String {
        match (container.is_empty(), name.is_empty()) {
            (true, _) => self.base.clone(),
            (false, true) => format!("{}/{}", self.base, encode_path(container)),
            (false, false) => format!("{}/{}/{}", self.base, encode_path(container), encode_path(name)),
        }
    }

    /// Sends a request, retrying 5xx and connection errors with exponential backoff. Returns
    /// the response for any other status; `ok` statuses pass, others become `Status` errors.
    pub(super) async fn send(
        &self,
        method: Method,
        url: String,
        ok: &[u16],
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let path = url.strip_prefix(&self.base).unwrap_or(&url).to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        let mut refreshed = false;
        for attempt in 1..=ATTEMPTS {
            let token = self.token.get();
            let rq = build(
                self.http
                    .request(method.clone(), &url)
                    .header(crate::api::pithos::X_AUTH_TOKEN, &token),
            );
            match rq.send().await {
                Ok(r) if ok.contains(&r.status().as_u16()) => return Ok(r),
                // (expired or rotated: once more with what the token's source holds now)
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED && !refreshed && self.token.refresh(&token) => {
                    refreshed = true;
                    continue;
                }
                Ok(r) if r.status().is_server_error() => {
                    last = format!("{} {}", r.status(), fault_text(r).await);
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let message = fault_text(r).await;
                    return Err(StorageError::status(method.as_str(), &path, status, message));
                }
                Err(e) => {
                    last = error_chain(&e);
                    // (the same certificate again would fail the same way)
                    if let Some(why) = crate::client::tls::certificate_problem(&last) {
                        tracing::error!(%method, %path, "the server's certificate: {why}");
                        break;
                    }
                }
            }
            if attempt < ATTEMPTS {
                tracing::warn!(%method, %path, attempt, error = %last, "retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(StorageError::network(method.as_str(), &path, last))
    }
}

/// What one listing row may take on the wire at most (a name of 1024 bytes, each escaped as
/// `\uXXXX`, and the other fields).
const LISTING_ROW_MAX: usize = 8 << 10;
const HASHMAP_MAX: usize = pithos::MAX_HASHMAP_BODY;
/// Replies that hold a few fields (faults, block upload hashes, version lists, containers).
const SMALL_MAX: usize = 64 << 10;
const LIST_MAX: usize = 16 << 20;

/// The body of `r`, at most `max` bytes: more is a protocol error and is not read (neither a
/// server nor whoever sits on the way can make the mount hold more than it asked for).
pub(super) async fn body_upto(mut r: Response, max: usize, method: &str, path: &str) -> Result<Bytes> {
    if let Some(n) = r.content_length().filter(|n| *n > max as u64) {
        return Err(protocol(
            method,
            path,
            format!("a reply of {n} bytes, more than the {max} expected"),
        ));
    }
    // (sized once from the announced length: a 4 MiB block is copied once, not regrown)
    let mut buf = bytes::BytesMut::with_capacity(r.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| StorageError::network(method, path, error_chain(&e)))?
    {
        if buf.len() + chunk.len() > max {
            return Err(protocol(
                method,
                path,
                format!("a reply of more than the {max} bytes expected"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A JSON reply of at most `max` bytes.
pub(super) async fn json_upto<T: serde::de::DeserializeOwned>(
    r: Response,
    max: usize,
    method: &str,
    path: &str,
) -> Result<T> {
    let body = body_upto(r, max, method, path).await?;
    serde_json::from_slice(&body).map_err(|e| protocol(method, path, e))
}

/// The first `n` bytes of a body; the rest is not read.
async fn body_prefix(mut r: Response, n: usize, method: &str, path: &str) -> Result<Bytes> {
    let mut buf = bytes::BytesMut::with_capacity(n.min(crate::api::hashing::BLOCK_SIZE));
    while buf.len() < n {
        match r
            .chunk()
            .await
            .map_err(|e| StorageError::network(method, path, error_chain(&e)))?
        {
            Some(chunk) => buf.extend_from_slice(&chunk[..chunk.len().min(n - buf.len())]),
            None => break,
        }
    }
    Ok(buf.freeze())
}

async fn fault_text(r: Response) -> String {
    let status = r.status();
    let body = body_upto(r, SMALL_MAX, "", "").await.unwrap_or_default();
    parse_fault(&body)
        .map(|f| f.message)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string())
}

fn protocol(method: &str, path: &str, message: impl ToString) -> StorageError {
    StorageError::protocol(method, path, message)
}

fn header_u64(r: &Response, name: &str) -> u64 {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn stat_from_row(e: pithos::ListingRow) -> ObjectStat {
    ObjectStat {
        mtime: e.x_object_version_timestamp.0.unwrap_or(0),
        name: e.name,
        size: e.bytes,
        content_type: e.content_type,
        version: e.x_object_version,
        hash: e.x_object_hash,
    }
}

impl Storage for PithosClient {
    async fn list_containers(&self) -> Result<Vec<ContainerStat>> {
        let r = self
            .send(
                Method::GET,
                format!("{}?format=json", self.url("", "")),
                &[200, 204],
                |b| b,
            )
            .await?;
        let v: Vec<ContainerEntry> = json_upto(r, LIST_MAX, "GET", "/").await?;
        Ok(v.into_iter()
            .map(|c| ContainerStat {
                name: c.name,
                bytes: c.bytes,
                mtime: time::OffsetDateTime::parse(&c.last_modified, &time::format_description::well_known::Rfc3339)
                    .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
                    .unwrap_or(0),
            })
            .collect())
    }

    async fn account_stat(&self) -> Result<AccountStat> {
        let r = self.send(Method::HEAD, self.url("", ""), &[200, 204], |b| b).await?;
        Ok(AccountStat {
            bytes_used: header_u64(&r, crate::api::pithos::X_ACCOUNT_BYTES_USED),
            quota: header_u64(&r, crate::api::pithos::X_ACCOUNT_POLICY_QUOTA),
        })
    }

    async fn create_container(&self, name: &str) -> Result<()> {
        self.send(Method::PUT, self.url(name, ""), &[201, 202], |b| {
            b.header("Content-Length", "0")
        })
        .await?;
        Ok(())
    }

    async fn delete_container(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, self.url(name, ""), &[204], |b| b).await?;
        Ok(())
    }

    async fn container_exists(&self, name: &str) -> Result<bool> {
        match self.send(Method::HEAD, self.url(name, ""), &[200, 204], |b| b).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, container: &str, prefix: &str, marker: &str, limit: usize) -> Result<Vec<Listed>> {
        let url = self.url(container, "");
        let r = self
            .send(Method::GET, url, &[200, 204], |b| {
                b.query(&[
                    ("format", "json"),
                    ("delimiter", "/"),
                    ("prefix", prefix),
                    ("marker", marker),
                    ("limit", &limit.to_string()),
                ])
            })
            .await?;
        if r.status() == StatusCode::NO_CONTENT {
            return Ok(vec![]);
        }
        let v: Vec<pithos::ListingRow> =
            json_upto(r, SMALL_MAX + limit.saturating_mul(LISTING_ROW_MAX), "GET", container).await?;
        // (whether the names are under the prefix and the pages advance is the core's check,
        // src/fs/listing.rs, for any storage)
        Ok(v.into_iter()
            .map(|mut e| match e.subdir.take() {
                Some(subdir) => Listed::Prefix(subdir),
                None => Listed::Object(stat_from_row(e)),
            })
            .collect())
    }

    async fn has_children(&self, container: &str, prefix: &str) -> Result<bool> {
        let url = self.url(container, "");
        let r = self
            .send(Method::GET, url, &[200, 204], |b| {
                b.query(&[("format", "json"), ("prefix", prefix), ("limit", "1")])
            })
            .await?;
        if r.status() == StatusCode::NO_CONTENT {
            return Ok(false);
        }
        let v: Vec<serde_json::Value> = json_upto(r, SMALL_MAX + LISTING_ROW_MAX, "GET", container).await?;
        Ok(!v.is_empty())
    }

    async fn head(&self, container: &str, name: &str) -> Result<Option<ObjectStat>> {
        Ok(self.object_info(container, name, None).await?.map(|i| i.stat))
    }

    async fn hashmap(&self, container: &str, name: &str, version: u64) -> Result<(u64, Vec<BlockHash>)> {
        let url = self.url(container, name);
        let r = self
            .send(Method::GET, url, &[200], |b| {
                b.query(&[
                    ("hashmap", "True"),
                    ("format", "json"),
                    ("version", &version.to_string()),
                ])
            })
            .await?;
        let hm: Hashmap = json_upto(r, HASHMAP_MAX, "GET", name).await?;
        if hm.block_size != crate::api::hashing::BLOCK_SIZE as u64 || hm.block_hash != crate::api::hashing::BLOCK_HASH {
            return Err(protocol(
                "GET",
                name,
                format!("unsupported block size/hash {} {}", hm.block_size, hm.block_hash),
            ));
        }
        Ok((hm.bytes, hm.hashes))
    }

    async fn read(&self, container: &str, name: &str, version: u64, start: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let url = self.url(container, name);
        let range = format!("bytes={}-{}", start, start + len - 1);
        let r = self
            .send(Method::GET, url, &[200, 206], |b| {
                b.query(&[("version", version.to_string())]).header("Range", &range)
            })
            .await?;
        // (a server that ignores the range sends the whole object: read only up to the end
        // of the range)
        let body = if r.status() == StatusCode::OK {
            let head = body_prefix(r, (start + len) as usize, "GET", name).await?;
            head.slice((start as usize).min(head.len())..)
        } else {
            body_upto(r, len as usize, "GET", name).await?
        };
        if body.len() as u64 != len {
            return Err(protocol(
                "GET",
                name,
                format!("short read: {} of {len} bytes", body.len()),
            ));
        }
        Ok(body)
    }

    async fn put_hashmap(
        &self,
        container: &str,
        name: &str,
        size: u64,
        hashes: &[BlockHash],
        content_type: &str,
        meta: &[(String, String)],
    ) -> Result<PutOutcome> {
        let meta: Vec<(String, String)> = meta
            .iter()
            .map(|(k, v)| {
                (
                    format!("{}{k}", pithos::OBJECT_META),
                    crate::api::pithos::encode_header_value(v),
                )
            })
            .collect();
        let body = serde_json::to_vec(&HashmapPut {
            bytes: size,
            hashes: hashes.to_vec(),
        })
        .expect("serializable");
        let url = self.url(container, name);
        let r = self
            .send(Method::PUT, url, &[201, 409], |mut b| {
                for (k, v) in &meta {
                    b = b.header(k, v);
                }
                b.query(&[("hashmap", "True"), ("format", "json")])
                    .header("Content-Type", content_type)
                    .body(body.clone())
            })
            .await?;
        if r.status() == StatusCode::CONFLICT {
            let missing: Vec<String> = json_upto(r, SMALL_MAX + 68 * hashes.len(), "PUT", name).await?;
            return Ok(PutOutcome::Missing(
                missing.iter().filter_map(|h| BlockHash::from_hex(h)).collect(),
            ));
        }
        Ok(PutOutcome::Done {
            version: header_u64(&r, crate::api::pithos::X_OBJECT_VERSION),
        })
    }

    async fn upload_block(&self, container: &str, data: Bytes) -> Result<BlockHash> {
        let url = self.url(container, "");
        let r = self
            .send(Method::POST, url, &[202], |b| {
                b.query(&[("update", ""), ("format", "json")])
                    .header("Content-Type", "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        let v: Vec<String> = json_upto(r, SMALL_MAX, "POST", container).await?;
        v.first()
            .and_then(|h| BlockHash::from_hex(h))
            .ok_or_else(|| protocol("POST", container, "no hash in the reply"))
    }

    async fn put_empty(&self, container: &str, name: &str, content_type: &str) -> Result<u64> {
        let r = self
            .send(Method::PUT, self.url(container, name), &[201], |b| {
                b.header("Content-Type", content_type).header("Content-Length", "0")
            })
            .await?;
        Ok(header_u64(&r, crate::api::pithos::X_OBJECT_VERSION))
    }

    async fn delete(&self, container: &str, name: &str) -> Result<()> {
        self.send(Method::DELETE, self.url(container, name), &[204], |b| b)
            .await?;
        Ok(())
    }

    async fn copy(&self, src_container: &str, src: &str, version: u64, dst_container: &str, dst: &str) -> Result<u64> {
        let from = format!("/{}/{}", encode_path(src_container), encode_path(src));
        let r = self
            .send(Method::PUT, self.url(dst_container, dst), &[201], |b| {
                b.header(crate::api::pithos::X_COPY_FROM, &from)
                    .header(crate::api::pithos::X_SOURCE_VERSION, version.to_string())
                    .header("Content-Length", "0")
            })
            .await?;
        Ok(header_u64(&r, crate::api::pithos::X_OBJECT_VERSION))
    }

    async fn rename(
        &self,
        src_container: &str,
        src: &str,
        dst_container: &str,
        dst: &str,
        recursive: bool,
    ) -> Result<()> {
        let dest = format!("/{}/{}", encode_path(dst_container), encode_path(dst));
        let mut url = self.url(src_container, src);
        if recursive {
            url.push_str("?delimiter=/");
        }
        self.send(Method::from_bytes(b"MOVE").expect("method"), url, &[201], |b| {
            b.header(crate::api::pithos::DESTINATION, &dest)
        })
        .await?;
        Ok(())
    }

    async fn object_info(&self, container: &str, name: &str, version: Option<u64>) -> Result<Option<ObjectInfo>> {
        let mut url = self.url(container, name);
        if let Some(v) = version {
            url.push_str(&format!("?version={v}"));
        }
        let r = match self.send(Method::HEAD, url, &[200], |b| b).await {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let decoded = |n: &str| {
            let v = h(n);
            crate::api::pithos::decode_header_value(&v).unwrap_or(v)
        };
        let version_timestamp = h(pithos::X_OBJECT_VERSION_TIMESTAMP);
        let meta = r
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                let key = k.as_str().strip_prefix(pithos::OBJECT_META)?;
                let v = v.to_str().ok()?;
                Some((
                    key.to_ascii_lowercase(),
                    crate::api::pithos::decode_header_value(v).unwrap_or_else(|| v.to_string()),
                ))
            })
            .collect();
        Ok(Some(ObjectInfo {
            stat: ObjectStat {
                name: name.to_string(),
                size: header_u64(&r, "content-length"),
                content_type: h("content-type"),
                version: header_u64(&r, pithos::X_OBJECT_VERSION),
                mtime: crate::api::timefmt::parse_http_date(&version_timestamp)
                    .or_else(|| crate::api::timefmt::parse_http_date(&h("last-modified")))
                    .unwrap_or(0),
                hash: h(pithos::X_OBJECT_HASH),
            },
            uuid: h(pithos::X_OBJECT_UUID),
            version_timestamp,
            modified_by: h(pithos::X_OBJECT_MODIFIED_BY),
            sharing: decoded(pithos::X_OBJECT_SHARING),
            public: h(pithos::X_OBJECT_PUBLIC),
            meta,
        }))
    }

    async fn update_object(&self, container: &str, name: &str, update: &ObjectUpdate) -> Result<()> {
        // Only what is sent changes: `update` merges metadata, and an empty value deletes a key.
        let mut headers = vec![];
        for (k, v) in &update.meta {
            let value = v
                .as_deref()
                .map(crate::api::pithos::encode_header_value)
                .unwrap_or_default();
            headers.push((format!("{}{}", pithos::OBJECT_META, k), value));
        }
        if let Some(s) = &update.sharing {
            headers.push((pithos::X_OBJECT_SHARING.to_string(), s.clone()));
        }
        if let Some(p) = update.public {
            headers.push((pithos::X_OBJECT_PUBLIC.to_string(), p.to_string()));
        }
        self.send(
            Method::POST,
            format!("{}?update", self.url(container, name)),
            &[202],
            |mut b| {
                for (k, v) in &headers {
                    b = b.header(k, v);
                }
                b.header("Content-Length", "0")
            },
        )
        .await?;
        Ok(())
    }

    async fn versions(&self, container: &str, name: &str) -> Result<Vec<(u64, i64)>> {
        let r = self
            .send(Method::GET, self.url(container, name), &[200], |b| {
                b.query(&[("version", "list"), ("format", "json")])
            })
            .await?;
        let list: pithos::VersionList = json_upto(r, LIST_MAX, "GET", name).await?;
        Ok(list
            .versions
            .into_iter()
            .map(|(id, ts)| (id, ts.0.unwrap_or(0)))
            .collect())
    }

    async fn container_info(&self, container: &str) -> Result<ContainerInfo> {
        let r = self
            .send(Method::HEAD, self.url(container, ""), &[200, 204], |b| b)
            .await?;
        Ok(ContainerInfo {
            versioning: r
                .headers()
                .get(pithos::X_CONTAINER_POLICY_VERSIONING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            quota: header_u64(&r, pithos::X_CONTAINER_POLICY_QUOTA),
            block_size: header_u64(&r, pithos::X_CONTAINER_BLOCK_SIZE),
            object_count: header_u64(&r, pithos::X_CONTAINER_OBJECT_COUNT),
            bytes_used: header_u64(&r, pithos::X_CONTAINER_BYTES_USED),
        })
    }

    async fn set_container_policy(&self, container: &str, versioning: Option<&str>, quota: Option<u64>) -> Result<()> {
        self.send(
            Method::POST,
            format!("{}?update", self.url(container, "")),
            &[202],
            |mut b| {
                if let Some(v) = versioning {
                    b = b.header(pithos::X_CONTAINER_POLICY_VERSIONING, v);
                }
                if let Some(q) = quota {
                    b = b.header(pithos::X_CONTAINER_POLICY_QUOTA, q.to_string());
                }
                b.header("Content-Length", "0")
            },
        )
        .await?;
        Ok(())
    }
}
