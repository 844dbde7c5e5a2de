//! Retention: deletes payloads and attempts older than `retention.max_age`, in small batches so
//! no statement holds long locks. Delivery states and counts stay queryable.
//!
//! One process at a time runs it: each pass needs the store's job lock (`Store::try_job_lock`;
//! a PostgreSQL advisory lock held by a session of its own), and the process that holds it keeps
//! it, and the job, until it stops or loses its session. Only roles that deliver (`worker` and
//! `all`) run retention (see `startup`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use blockhook_core::{Clock, JobLock, StoreRef};

use crate::config::RetentionSettings;
use crate::metrics::Metrics;

/// The job lock's name.
const JOB: &str = "retention";

/// Runs one pass every `interval` until `stop`, whenever this process holds the job lock.
pub async fn run(
    store: StoreRef,
    clock: Arc<dyn Clock>,
    cfg: RetentionSettings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut lock: Option<Box<dyn JobLock>> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(cfg.interval) => {}
            () = stop.cancelled() => return,
        }
        if let Some(held) = lock.as_mut() {
            if !held.held().await {
                tracing::warn!("lost the retention lock; another process may take over");
                lock = None;
            }
        }
        if lock.is_none() {
            match store.try_job_lock(JOB).await {
                Ok(Some(got)) => {
                    tracing::info!("this process runs retention");
                    lock = Some(got);
                }
                Ok(None) => {
                    tracing::debug!("another process runs retention");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention lock unavailable");
                    continue;
                }
            }
        }
        metrics.retention_passes.inc();
        pass(&*store, &*clock, &cfg, &stop).await;
    }
}

async fn pass(
    store: &dyn blockhook_core::Store,
    clock: &dyn Clock,
    cfg: &RetentionSettings,
    stop: &CancellationToken,
) {
    let before = clock.now() - cfg.max_age;
    let mut removed = 0u64;
    loop {
        match store.purge_before(before, cfg.batch).await {
            Ok(0) => break,
            Ok(n) => removed += n,
            Err(e) => {
                tracing::warn!(error = %e, "retention pass failed");
                break;
            }
        }
        if stop.is_cancelled() {
            return;
        }
        // Leave room for the dispatcher between batches.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if removed > 0 {
        tracing::info!(removed, %before, "retention removed old payloads and attempts");
    }
}
