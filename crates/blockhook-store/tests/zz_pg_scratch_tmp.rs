#![cfg(feature = "contract")]
#![allow(clippy::unwrap_used)]
use blockhook_store::contract::checks;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_renew() {
    let Some(s) = blockhook_store::postgres::testing::fresh().await else { return };
    checks::dispatch::renew_leases_needs_the_right_token(s).await;
}
