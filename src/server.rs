//! `imgfs serve`: the identity, object-storage and image APIs over an
//! [`Engine`](crate::store::Engine). The routes are built by [`router`] apart from [`serve`],
//! so tests can drive the app on any listener.

pub mod collector;
mod data;
mod deadline;
mod error;
mod identity;
mod images;
pub mod ops;
mod pithos;
mod request;
pub mod settings;
mod unread_body;

use crate::store::{Engine, User};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
pub use error::{ApiError, ApiResult};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Engine>,
    pub metrics: Arc<ops::Metrics>,
}

impl AppState {
    pub fn new(store: Arc<Engine>) -> AppState {
        AppState {
            store,
            metrics: Arc::default(),
        }
    }

    /// The user behind the request's token; 401 when there is none or it is unknown.
    pub async fn authenticate(&self, headers: &HeaderMap, q: &request::Query) -> ApiResult<User> {
        let Some(token) = request::token(headers, q)?.map(|t| t.to_string()) else {
            return Err(ApiError::unauthorized("No authentication token"));
        };
        self.session(token).await.map(|s| s.user)
    }

    /// The session of a token; 401 for an unknown, revoked or expired one.
    pub async fn session(&self, token: String) -> ApiResult<crate::store::Session> {
        self.session_or(token, ApiError::invalid_token).await
    }

    /// [`AppState::session`], with the route's own fault for a token it does not know (an
    /// expired one says so everywhere, in Astakos's words).
    pub async fn session_or(
        &self,
        token: String,
        unknown: impl FnOnce() -> ApiError,
    ) -> ApiResult<crate::store::Session> {
        use crate::store::TokenCheck;
        match self.store.check_token(&token).await? {
            TokenCheck::Valid(s) => Ok(s),
            TokenCheck::Expired => Err(ApiError::unauthorized("Authentication expired")),
            TokenCheck::Unknown => Err(unknown()),
        }
    }
}

pub fn router(state: AppState) -> Router {
    use crate::api::astakos::*;
    Router::new()
        .route(&format!("{IDENTITY_PATH}/tokens"), post(identity::tokens))
        .route(&format!("{ACCOUNT_PATH}/user_catalogs"), post(identity::user_catalogs))
        .route("/auth/v1.0", get(identity::swift_auth))
        .route("/auth/v1", get(identity::swift_auth))
        .route(OBJECT_STORE_PATH, any(pithos::handle))
        .route(&format!("{OBJECT_STORE_PATH}/"), any(pithos::handle))
        .route(&format!("{OBJECT_STORE_PATH}/{{*rest}}"), any(pithos::handle))
        .route("/public/{id}", any(pithos::public_object))
        .route("/image/v1.0/{*rest}", any(images::handle))
        .route("/image/v1/{*rest}", any(images::handle))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::bad_request("API endpoint not found") })
        .layer(middleware::from_fn(unread_body::close_if_unread))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// One line per request: method, path (never the query, which may hold a token), status,
/// latency. Server faults at warn, the rest at info.
/// Counted in the metrics too.
async fn log_request(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let bytes_in = content_length(req.headers());
    let start = Instant::now();
    let mut resp = next.run(req).await;
    never_cache(resp.headers_mut());
    let status = resp.status().as_u16();
    let took = start.elapsed();
    let bytes_out = http_body::Body::size_hint(resp.body())
        .exact()
        .unwrap_or_else(|| content_length(resp.headers()));
    let bytes_out = if method == axum::http::Method::HEAD {
        0
    } else {
        bytes_out
    };
    st.metrics
        .record(&path, method.as_str(), status, took, bytes_in, bytes_out);
    let ms = took.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, latency_ms = format_args!("{ms:.1}"), "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms = format_args!("{ms:.1}"), "request");
    }
    resp
}

fn content_length(h: &HeaderMap) -> u64 {
    h.get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the original Synnefo adds to every answer (Django's `add_never_cache_headers` and
/// its API decorator): the answers are per token and change at any time, so no cache along
/// the way may keep them. `Last-Modified` and `Content-Type` only where the route set none.
fn never_cache(h: &mut HeaderMap) {
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, EXPIRES, LAST_MODIFIED, VARY};
    use axum::http::HeaderValue;
    let now = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now()))
        .expect("an HTTP date is a header value");
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate, max-age=0"),
    );
    h.insert(EXPIRES, now.clone());
    h.insert(VARY, HeaderValue::from_static("X-Auth-Token, Accept-Language"));
    h.entry(LAST_MODIFIED).or_insert(now);
    h.entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("text/plain; charset=UTF-8"));
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// What clients may hold of the server: connections, and time without sending (the
/// defaults are `imgfs serve`'s options: 1024 connections, 20 s, 60 s).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a request's headers may take to arrive, and how long a kept-alive
    /// connection may sit idle before its next request.
    pub header_timeout: std::time::Duration,
    /// How long a request body may send nothing (a slow upload that keeps sending is fine).
    pub body_idle_timeout: std::time::Duration,
}

/// How long requests in flight may take to finish after SIGTERM.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves until SIGINT or SIGTERM, then finishes the requests in flight (up to 30 s).
/// Connections beyond `limits.max_connections` wait to be accepted; one that sends no
/// headers, or no body bytes, for its timeout is closed (slow clients cannot pile up).
///
/// With `tls`, every connection is TLS (the handshake within the header timeout), and the
/// URLs the identity service hands out say https.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), ServeError> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut app = router(state)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_idle_timeout,
        ))
        // HTTP/2 names the host in the URI (`:authority`), not in a Host header; the catalog's
        // URLs are built from Host.
        .layer(tower::util::MapRequestLayer::new(|mut r: Request| {
            if !r.headers().contains_key(axum::http::header::HOST) {
                if let Some(v) = r
                    .uri()
                    .authority()
                    .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
                {
                    r.headers_mut().insert(axum::http::header::HOST, v);
                }
            }
            r
        }));
    if tls.is_some() {
        // (what `base_url` builds the catalog from; a client's own value is overridden)
        app = app.layer(tower::util::MapRequestLayer::new(|mut r: Request| {
            r.headers_mut()
                .insert("x-forwarded-proto", axum::http::HeaderValue::from_static("https"));
            r
        }));
    }
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // (out of descriptors, say: wait rather than spin)
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, app, watcher, tls) = (builder.clone(), app.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let limit = limits.header_timeout;
            match tls {
                None => serve_connection(&builder, stream, limit, app, watcher).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => serve_connection(&builder, s, limit, app, watcher).await,
                    Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!("TLS handshake timed out"),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {},
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("requests still in flight after {DRAIN:?}; stopping"),
    }
    Ok(())
}

/// Serves one connection (plain or after its TLS handshake), whose first byte must come
/// within `first_byte` ([`deadline`]).
async fn serve_connection<I>(
    builder: &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    io: I,
    first_byte: std::time::Duration,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(deadline::FirstByteDeadline::new(io, first_byte));
    let conn = builder
        .serve_connection(io, hyper_util::service::TowerToHyperService::new(app))
        .into_owned();
    // (a client gone or timed out is no server error)
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// The TLS configuration of a certificate chain and its private key (PEM files), with the
/// `ring` provider; h2 and http/1.1 offered by ALPN.
pub fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &std::path::Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
    }
    tracing::info!("shutting down");
}
