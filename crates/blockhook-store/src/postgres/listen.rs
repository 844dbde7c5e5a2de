//! Cross-process wake-ups: a LISTEN task on [`CHANNEL`] that wakes `wait_for_work`.
//!
//! Every write that makes work due now (ingest, resend, recover) calls
//! `pg_notify('blockhook_due', current_schema())` inside its transaction, so the notification is
//! delivered at commit, exactly when the rows become visible, and only if they do. The payload is
//! the schema so that several blockhook deployments (or parallel test schemas) sharing one
//! database do not wake each other: channels are per database, schemas are not.
//!
//! The listener has its own one-connection pool, so it never takes a connection the queries
//! need. It reconnects by itself; because notifications sent while it was away are lost, each
//! reconnection wakes the waiters once (a wake-up is only a hint to look, so a spurious one costs
//! one empty claim). The dispatcher also wakes on its own timer, so a listener that cannot
//! reconnect delays work by at most that timer, never loses it.

use std::sync::Arc;
use std::time::Duration;

use blockhook_core::Error;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::classify;

/// The channel every blockhook process listens on.
pub(super) const CHANNEL: &str = "blockhook_due";

/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Starts listening before returning (so a notification sent right after `open` is not missed),
/// then keeps listening in a task until the returned handle is aborted.
pub(super) async fn start(
    connect: PgConnectOptions,
    acquire_timeout: Duration,
    schema: String,
    wake: Arc<Notify>,
) -> Result<JoinHandle<()>, Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        // The connection is held for as long as it lives; the pool only reconnects it.
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(connect);
    let listener = subscribe(&pool).await.map_err(classify)?;
    Ok(tokio::spawn(run(pool, listener, schema, wake)))
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // The pool only closes when the store is dropped, and then this task is aborted anyway.
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Wakes every current waiter, and leaves a permit for the next one, so a notification that
/// arrives while the dispatcher is busy (not waiting) still cuts its next wait short.
pub(super) fn wake_all(wake: &Notify) {
    wake.notify_waiters();
    wake.notify_one();
}

async fn run(pool: PgPool, first: PgListener, schema: String, wake: Arc<Notify>) {
    let mut listener = Some(first);
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(current) = listener.as_mut() else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            match subscribe(&pool).await {
                Ok(fresh) => {
                    tracing::info!("LISTEN connection re-established");
                    listener = Some(fresh);
                    wake_all(&wake);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "LISTEN reconnection failed")
                }
            }
            continue;
        };
        match current.try_recv().await {
            Ok(Some(n)) => {
                backoff = BACKOFF_MIN;
                if n.payload() == schema {
                    wake_all(&wake);
                }
            }
            // The connection dropped and `PgListener` re-established it (and re-issued LISTEN):
            // anything notified in between is lost, so look once.
            Ok(None) => wake_all(&wake),
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection lost");
                // Drop it (its connection goes back to the one-connection pool, or is closed if
                // dead) and subscribe afresh: after an error its state is unknown.
                listener = None;
            }
        }
    }
}
