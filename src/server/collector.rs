//! The garbage collector's schedule inside `imgfs serve`: once at start-up (which also sweeps
//! what a crash left behind), then every interval. The store decides what may go
//! ([`Engine::collect_garbage`]); several servers over one database take turns.

use crate::store::Engine;
use std::sync::Arc;
use std::time::Duration;

/// When to collect, and how old unheld data must be before it goes.
#[derive(Debug, Clone, Copy)]
pub struct GcSchedule {
    /// How long an uploaded block waits for the hashmap PUT that uses it, and how long a
    /// block nobody holds is kept: it must cover the longest upload in flight (a client
    /// whose blocks were taken meanwhile gets 409 for them and sends them again).
    pub grace: Duration,
    /// Between runs; zero: only at start-up.
    pub interval: Duration,
}

/// Runs the collector in the background for as long as the runtime lives.
pub fn spawn(store: Arc<Engine>, metrics: Arc<super::ops::Metrics>, schedule: GcSchedule) {
    tokio::spawn(async move {
        loop {
            let s = store.clone();
            // (its own task: a panic in one run is logged, and the next run comes)
            match tokio::spawn(async move { s.collect_garbage(schedule.grace).await }).await {
                Ok(Ok(r)) if r.skipped => {
                    metrics.collected(&r);
                    tracing::info!("garbage collection skipped: another collector is running")
                }
                Ok(Ok(r)) => {
                    metrics.collected(&r);
                    if r.blocks_freed + r.orphans_freed + r.temp_files_freed + r.uploads_expired > 0 {
                        tracing::info!(
                            blocks = r.blocks_freed,
                            orphans = r.orphans_freed,
                            temp_files = r.temp_files_freed,
                            uploads_expired = r.uploads_expired,
                            bytes = r.bytes_freed,
                            "garbage collected"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "garbage collection failed (retried next interval)"),
                Err(e) => tracing::error!(error = %e, "garbage collection panicked (retried next interval)"),
            }
            if schedule.interval.is_zero() {
                break;
            }
            tokio::time::sleep(schedule.interval).await;
        }
    });
}
