//! What operators and load balancers ask of a server: `GET /healthz` (ready only when the
//! metadata database and the block store answer) and `GET /metrics` (Prometheus text format:
//! requests by API, method and status, their latencies, bytes in and out, the collector's
//! work). Neither needs a token and neither says anything of any account: the labels are the
//! API, the method and the status, never a path.

use super::AppState;
use crate::store::GcReport;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The server's counters since it started.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    gc_runs: AtomicU64,
    gc_blocks: AtomicU64,
    gc_files: AtomicU64,
    gc_bytes: AtomicU64,
}

#[derive(Default, Clone)]
struct Histogram {
    /// Per bucket of [`BUCKETS`] (not cumulative), then the overflow.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

/// The API a request path belongs to (a fixed set, so a client cannot grow the label set).
pub fn api_of(path: &str) -> &'static str {
    use crate::api::astakos::{ACCOUNT_PATH, IDENTITY_PATH, OBJECT_STORE_PATH};
    if path.starts_with(OBJECT_STORE_PATH) {
        "object-store"
    } else if path.starts_with("/image/") {
        "image"
    } else if path.starts_with(IDENTITY_PATH) || path.starts_with(ACCOUNT_PATH) || path.starts_with("/auth/") {
        "identity"
    } else if path.starts_with("/public/") {
        "public"
    } else if path == "/healthz" || path == "/metrics" {
        "ops"
    } else {
        "other"
    }
}

impl Metrics {
    /// One request answered. Methods outside the standard set count as `OTHER`.
    pub fn record(&self, path: &str, method: &str, status: u16, took: Duration, bytes_in: u64, bytes_out: u64) {
        let api = api_of(path);
        let method = match method {
            "GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "COPY" | "MOVE" | "OPTIONS" | "PATCH" => method,
            _ => "OTHER",
        };
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((api, method.to_string(), status))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut lat = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = lat.entry(api).or_default();
        h.counts[BUCKETS.partition_point(|&b| b < secs)] += 1;
        h.sum += secs;
        drop(lat);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// One run of the collector (skipped runs count too: they are runs another server did).
    pub fn collected(&self, r: &GcReport) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_blocks.fetch_add(r.blocks_freed, Ordering::Relaxed);
        self.gc_files
            .fetch_add(r.orphans_freed + r.temp_files_freed, Ordering::Relaxed);
        self.gc_bytes.fetch_add(r.bytes_freed, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything counted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP imgfs_requests_total Requests answered, by API, method and status."
        );
        let _ = writeln!(w, "# TYPE imgfs_requests_total counter");
        for ((api, method, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                w,
                "imgfs_requests_total{{api=\"{api}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            w,
            "# HELP imgfs_request_duration_seconds Time to the answer's head, by API."
        );
        let _ = writeln!(w, "# TYPE imgfs_request_duration_seconds histogram");
        for (api, h) in self.latency.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let mut cum = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cum += h.counts[i];
                let _ = writeln!(
                    w,
                    "imgfs_request_duration_seconds_bucket{{api=\"{api}\",le=\"{le}\"}} {cum}"
                );
            }
            cum += h.counts[BUCKETS.len()];
            let _ = writeln!(
                w,
                "imgfs_request_duration_seconds_bucket{{api=\"{api}\",le=\"+Inf\"}} {cum}"
            );
            let _ = writeln!(w, "imgfs_request_duration_seconds_sum{{api=\"{api}\"}} {}", h.sum);
            let _ = writeln!(w, "imgfs_request_duration_seconds_count{{api=\"{api}\"}} {cum}");
        }
        let counters = [
            (
                "imgfs_request_bytes_total",
                "Request body bytes announced by Content-Length.",
                &self.bytes_in,
            ),
            (
                "imgfs_response_bytes_total",
                "Response body bytes of answers of known length.",
                &self.bytes_out,
            ),
            (
                "imgfs_gc_runs_total",
                "Runs of the garbage collector (skipped ones included).",
                &self.gc_runs,
            ),
            (
                "imgfs_gc_blocks_collected_total",
                "Blocks nobody held, deleted.",
                &self.gc_blocks,
            ),
            (
                "imgfs_gc_files_collected_total",
                "Temp and orphan block files deleted.",
                &self.gc_files,
            ),
            (
                "imgfs_gc_bytes_collected_total",
                "Disk bytes of everything the collector deleted.",
                &self.gc_bytes,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(w, "# HELP {name} {help}");
            let _ = writeln!(w, "# TYPE {name} counter");
            let _ = writeln!(w, "{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        st.metrics.render() + &pool_metrics(st.store.db_pool()),
    )
        .into_response()
}

/// The metadata database's connection pool, when it has one (PostgreSQL).
fn pool_metrics(pool: Option<(usize, usize)>) -> String {
    let Some((open, idle)) = pool else { return String::new() };
    format!(
        "# HELP imgfs_db_connections Connections to the metadata database, by state.\n\
         # TYPE imgfs_db_connections gauge\n\
         imgfs_db_connections{{state=\"in_use\"}} {}\n\
         imgfs_db_connections{{state=\"idle\"}} {idle}\n",
        open.saturating_sub(idle)
    )
}

/// 200 `ok` when the metadata database answers a query and the block store its root; else
/// 503 with which of them failed and `Retry-After`, for a load balancer to send requests
/// elsewhere (the cause goes to the log only: the endpoint needs no token).
pub async fn healthz(State(st): State<AppState>) -> Response {
    let failed = match st.store.health().await {
        Ok(()) => return (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            match e {
                crate::store::StoreError::Db(_) | crate::store::StoreError::NoRow => {
                    "the metadata database does not answer"
                }
                _ => "the block store does not answer",
            }
        }
    };
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::RETRY_AFTER, "5")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!("unavailable: {failed}\n")))
        .expect("a static response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_counts_what_was_recorded() {
        let m = Metrics::default();
        let p = "/object-store/v1/acc/c/o";
        m.record(p, "PUT", 201, Duration::from_millis(3), 10, 0);
        m.record(p, "PUT", 201, Duration::from_millis(30), 5, 0);
        m.record("/image/v1.0/images/", "BREW", 400, Duration::from_secs(20), 0, 7);
        let t = m.render();
        assert!(t.contains("imgfs_requests_total{api=\"object-store\",method=\"PUT\",status=\"201\"} 2\n"));
        assert!(t.contains("imgfs_requests_total{api=\"image\",method=\"OTHER\",status=\"400\"} 1\n"));
        assert!(t.contains("imgfs_request_duration_seconds_bucket{api=\"object-store\",le=\"0.005\"} 1\n"));
        assert!(t.contains("imgfs_request_duration_seconds_bucket{api=\"object-store\",le=\"0.05\"} 2\n"));
        assert!(t.contains("imgfs_request_duration_seconds_bucket{api=\"image\",le=\"10\"} 0\n"));
        assert!(t.contains("imgfs_request_duration_seconds_bucket{api=\"image\",le=\"+Inf\"} 1\n"));
        assert!(t.contains("imgfs_request_duration_seconds_count{api=\"object-store\"} 2\n"));
        assert!(t.contains("imgfs_request_bytes_total 15\n"));
        assert!(t.contains("imgfs_response_bytes_total 7\n"));
        assert!(!t.contains("acc"), "no path in any label");
        m.collected(&GcReport {
            blocks_freed: 3,
            bytes_freed: 99,
            ..Default::default()
        });
        let t = m.render();
        assert!(t.contains("imgfs_gc_blocks_collected_total 3\n") && t.contains("imgfs_gc_runs_total 1\n"));
    }
}
