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

/// How long a completion may wait for others to share its transaction, when the store does not
/// gather them itself (`Queue::gathers_finishes`): at an everyday rate each completion would
/// otherwise be a transaction (and a WAL flush) of its own. About ten share one at 100
/// deliveries/s. Far below any lease, so a completion never outlives its lease waiting; the
/// attempt log shows an outcome at most this much later (docs/decisions.md, "Completions wait
/// for company before PostgreSQL's finish").
const GATHER: Duration = Duration::from_millis(100);

/// Batches at least this big do not wait: under load the previous write's time has gathered them
/// already, and waiting would only delay the bookkeeping.
const FEW: usize = 32;

/// Runs until every sender is dropped and the queue is empty.
pub(super) async fn run(cx: Arc<DispatchCx>, mut rx: mpsc::Receiver<Completion>) {
    let gather = !cx.store.gathers_finishes();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if gather && batch.len() < FEW {
            wait_for_company(&mut rx, &mut batch, |c| c.releases_key).await;
        }
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

/// Adds to `batch` what arrives within [`GATHER`], unless the batch is full or holds an item
/// that should not wait (`urgent`: a completion that lets an ordered key's next delivery go).
async fn wait_for_company<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    urgent: impl Fn(&T) -> bool,
) {
    let until = tokio::time::Instant::now() + GATHER;
    // Each item is looked at once, as it arrives.
    let mut seen = 0;
    while batch.len() < MAX_BATCH && !batch[seen..].iter().any(&urgent) {
        seen = batch.len();
        let room = MAX_BATCH - batch.len();
        match tokio::time::timeout_at(until, rx.recv_many(batch, room)).await {
            Ok(n) if n > 0 => {}
            _ => return,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Items are `bool`s here: whether each is urgent.
    async fn wait(rx: &mut mpsc::Receiver<bool>, batch: &mut Vec<bool>) {
        wait_for_company(rx, batch, |urgent| *urgent).await;
    }

    /// Waits with a batch of one non-urgent item while `item` arrives 5 ms later (the queue
    /// stays open a second longer); returns the batch and how long the wait took.
    async fn wait_while_one_arrives(item: bool) -> (Vec<bool>, Duration) {
        let (tx, mut rx) = mpsc::channel(8);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(item).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let mut batch = vec![false];
        let start = tokio::time::Instant::now();
        wait(&mut rx, &mut batch).await;
        later.abort();
        (batch, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_completion_waits_for_company_until_the_window_ends() {
        let (batch, waited) = wait_while_one_arrives(false).await;
        assert_eq!(batch.len(), 2, "the one sent 5 ms later joined");
        assert_eq!(waited, GATHER, "and the window ran out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_release_or_a_closed_queue_does_not_wait() {
        let (tx, mut rx) = mpsc::channel(8);
        let start = tokio::time::Instant::now();
        let mut batch = vec![true];
        wait(&mut rx, &mut batch).await;
        assert_eq!((batch.len(), start.elapsed()), (1, Duration::ZERO));

        let mut batch = vec![false];
        drop(tx);
        wait(&mut rx, &mut batch).await;
        assert_eq!((batch.len(), start.elapsed()), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_arrival_ends_the_wait() {
        assert_eq!(
            wait_while_one_arrives(true).await,
            (vec![false, true], Duration::from_millis(5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(MAX_BATCH);
        let mut batch = vec![false];
        for _ in 1..MAX_BATCH + 5 {
            if tx.try_send(false).is_err() {
                break;
            }
        }
        let start = tokio::time::Instant::now();
        wait(&mut rx, &mut batch).await;
        assert_eq!((batch.len(), start.elapsed()), (MAX_BATCH, Duration::ZERO));
    }
}
