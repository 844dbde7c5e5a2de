//! The contract suite: behaviour every `Store` backend must show, written once and run against
//! each backend (STYLE rule 15), so SQLite and PostgreSQL cannot drift apart.
//!
//! Each check in [`checks`] is `pub async fn name(store: StoreRef)` and panics on failure.
//! `tests/contract.rs` turns each into one `#[tokio::test]` that runs it on every store from
//! [`stores`]: always a fresh SQLite store, plus a fresh PostgreSQL one when
//! `BLOCKHOOK_TEST_DATABASE_URL` is set. Other crates (the server) can enable the `contract`
//! feature and reuse [`stores`], [`run`] and [`fixtures`].
//!
//! What a backend's `testing::fresh()` must give: an empty, migrated store that no other check
//! shares. Several checks look at global state (`claim_due`, `queue_stats`, `next_due_at`,
//! `purge_before`) and assume only their own rows exist.
//!
//! Conventions the checks pin down, so both backends answer alike:
//! - `NotFound` names: `"merchant"`, `"api_key"`, `"endpoint"`, `"event"`, `"delivery"`.
//! - Resend limits: `Conflict` whose message contains `"window"` (too old) or `"max_per_event"`
//!   (too many resends).
//! - `EventQuery::state`: `Pending` matches any undelivered delivery (leased or not), `InFlight`
//!   one currently held under a lease.
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod checks;
pub mod fixtures;

use std::future::Future;
use std::sync::Once;

use blockhook_core::StoreRef;

/// Fresh stores to run a check against, labelled by backend.
pub async fn stores() -> Vec<(&'static str, StoreRef)> {
    static SKIP_NOTICE: Once = Once::new();
    let mut all = vec![("sqlite", crate::sqlite::testing::fresh().await)];
    match crate::postgres::testing::fresh().await {
        Some(pg) => all.push(("postgres", pg)),
        None => SKIP_NOTICE.call_once(|| {
            eprintln!("postgres contract checks skipped: BLOCKHOOK_TEST_DATABASE_URL not set");
        }),
    }
    all
}

/// Runs `check` on every store from [`stores`], each in its own task, and panics naming the
/// check and the backend when it fails there.
pub async fn run<F, Fut>(name: &str, check: F)
where
    F: Fn(StoreRef) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for (backend, store) in stores().await {
        if let Err(e) = tokio::spawn(check(store)).await {
            let why = if e.is_panic() {
                let payload = e.into_panic();
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".to_owned())
            } else {
                e.to_string()
            };
            panic!("contract check `{name}` failed on {backend}: {why}");
        }
    }
}
