//! Retention: deletes payloads and attempts older than `retention.max_age`, in small batches so
//! no statement holds long locks. Delivery states and counts stay queryable.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use blockhook_core::{Clock, StoreRef};

use crate::config::RetentionSettings;

/// Runs one pass every `interval` until `stop`.
pub async fn run(
    store: StoreRef,
    clock: Arc<dyn Clock>,
    cfg: RetentionSettings,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(cfg.interval) => {}
            () = stop.cancelled() => return,
        }
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
}
