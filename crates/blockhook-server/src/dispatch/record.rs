//! Hands completed attempts to the store in batches: whatever has finished since the last
//! write goes into one `Store::finish` transaction (group commit for the attempt log).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use blockhook_core::{Completion, Error, Next};

use super::DispatchCx;

const MAX_BATCH: usize = 512;

/// Runs until every sender is dropped and the queue is empty.
pub async fn run(cx: Arc<DispatchCx>, mut rx: mpsc::Receiver<Completion>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&cx, &batch).await;
        // A retry may now be due sooner than the dispatcher's current sleep.
        if batch.iter().any(|c| matches!(c.next, Next::RetryAt(_))) {
            cx.wake.notify_one();
        }
        batch.clear();
    }
}

/// Writes one batch, retrying while the store is unavailable. Past the lease length it gives up:
/// by then the leases have expired and the deliveries will be attempted again (at least once).
async fn write(cx: &DispatchCx, batch: &[Completion]) {
    let give_up = cx.clock.now() + cx.settings.lease;
    let mut pause = Duration::from_millis(100);
    loop {
        match cx.store.finish(batch, cx.clock.now()).await {
            Ok(_) => return,
            Err(Error::Unavailable(e)) if cx.clock.now() < give_up => {
                tracing::warn!(error = %e, completions = batch.len(), "store unavailable; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(error = %e, completions = batch.len(), "could not record attempts; their deliveries will be retried after the lease expires");
                return;
            }
        }
    }
}
