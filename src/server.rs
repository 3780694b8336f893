//! `imgfs serve`: the identity, object-storage and image APIs over a [`Store`]. The routes
//! are built by [`router`] apart from [`serve`], so tests can drive the app on any listener.

pub mod collector;
mod data;
mod error;
mod identity;
mod images;
mod pithos;
mod request;

use crate::store::{Store, StoreError, User};
use axum::extract::Request;
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
    pub store: Arc<dyn Store>,
}

impl AppState {
    /// Runs an engine call off the async workers (SQLite and block files block).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> ApiResult<T> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(store.as_ref())).await??)
    }

    /// The user behind the request's token; 401 when there is none or it is unknown.
    pub async fn authenticate(&self, headers: &HeaderMap, q: &request::Query) -> ApiResult<User> {
        let Some(token) = request::token(headers, q)?.map(|t| t.to_string()) else {
            return Err(ApiError::unauthorized("No authentication token"));
        };
        match self.run(move |s| s.authenticate(&token)).await? {
            Some(u) => Ok(u),
            None => Err(ApiError::invalid_token()),
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
        .fallback(|| async { ApiError::bad_request("API endpoint not found") })
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One line per request: method, path (never the query, which may hold a token), status,
/// latency. Server faults at warn, the rest at info.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let mut resp = next.run(req).await;
    never_cache(resp.headers_mut());
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, latency_ms = format_args!("{ms:.1}"), "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms = format_args!("{ms:.1}"), "request");
    }
    resp
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
pub async fn serve(state: AppState, listener: tokio::net::TcpListener, limits: Limits) -> Result<(), ServeError> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let app = router(state).layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_idle_timeout,
    ));
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
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // (a client gone or timed out is no server error)
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
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

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
    }
    tracing::info!("shutting down");
}
