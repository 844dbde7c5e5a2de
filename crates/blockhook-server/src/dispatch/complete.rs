//! The complete step: turns an attempt and the retry policy's decision into a [`Completion`]
//! (the attempt log entry plus what happens next), and hands completions to the store in
//! batches: whatever has finished since the last write goes into one `Queue::finish`
//! transaction (group commit for the attempt log).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use blockhook_core::{AttemptRecord, Claim, Completion, Error, Next, Outcome};

use super::DispatchCx;
use super::attempt::Attempted;

const MAX_BATCH: usize = 512;

/// What the store records for one attempt of `claim`: the log entry and `next`.
pub(super) fn completion(claim: Claim, attempted: Attempted, next: Next) -> Completion {
    let disable_reason = matches!(next, Next::DisableEndpoint).then(|| {
        format!(
            "410 Gone on attempt {} of {}",
            claim.attempt, claim.delivery_id
        )
    });
    let resp = attempted.response;
    let attempt = AttemptRecord {
        id: attempted.id,
        delivery_id: claim.delivery_id.clone(),
        number: attempted.number,
        started_at: attempted.started_at,
        url: claim.endpoint.url.as_str().to_owned(),
        request_headers: attempted.request_headers,
        status: resp.status,
        response_headers: resp.headers,
        response_body: resp.body,
        response_truncated: resp.truncated,
        latency_ms: u32::try_from(resp.latency.as_millis()).unwrap_or(u32::MAX),
        error: match attempted.outcome {
            Outcome::Delivered { .. } => None,
            Outcome::Failed { class, .. } => Some(class),
        },
        error_detail: resp.detail,
    };
    let releases_key = claim.endpoint.ordering.per_key() && !matches!(next, Next::RetryAt(_));
    Completion {
        delivery_id: claim.delivery_id,
        lease: claim.lease,
        attempt,
        next,
        disable_reason,
        releases_key,
    }
}

/// Runs until every sender is dropped and the queue is empty.
pub(super) async fn run(cx: Arc<DispatchCx>, mut rx: mpsc::Receiver<Completion>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A retry may now be due sooner than the dispatcher's current sleep, and a key's next
        // delivery was due all along (only unordered completions go without a wake: waking per
        // completion would cost one claim per event).
        let wake = batch
            .iter()
            .any(|c| c.releases_key || matches!(c.next, Next::RetryAt(_)));
        // Moved into one shared slice, not copied: the store may hand it to its writer thread.
        let done: Arc<[Completion]> = std::mem::take(&mut batch).into();
        write(&cx, &done).await;
        if wake {
            cx.wake.notify_one();
        }
    }
}

/// Writes one batch, retrying while the store is unavailable. Past the lease length it gives up:
/// by then the leases have expired and the deliveries will be attempted again (at least once).
async fn write(cx: &DispatchCx, batch: &Arc<[Completion]>) {
    let give_up = cx.clock.now() + cx.settings.lease;
    let mut pause = Duration::from_millis(100);
    loop {
        match cx.store.finish(Arc::clone(batch), cx.clock.now()).await {
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
