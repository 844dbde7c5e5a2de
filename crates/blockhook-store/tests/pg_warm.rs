//! The PostgreSQL hot path runs on the connection it used last: at an everyday rate,
//! consecutive ingests go to one backend (warm in the CPU's caches), not to whichever idle
//! connection the pool hands out first, even after a burst of concurrent ingests opened several.
//!
//! Needs `BLOCKHOOK_TEST_DATABASE_URL`; without it the test prints why it skips and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use blockhook_store::contract::fixtures::{endpoint, event, merchant, t};
use blockhook_store::postgres::testing;
use sqlx::{Connection, PgConnection};

/// Backends of the test's store (its `application_name` is its schema) whose last statement was
/// an ingest started after `since` (all of them with `since` `None`).
async fn ingesting_backends(admin: &mut PgConnection, schema: &str, since: Option<&str>) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
         AND query LIKE '%INSERT INTO events%' \
         AND ($2::text IS NULL OR query_start > $2::timestamptz)",
    )
    .bind(schema)
    .bind(since)
    .fetch_one(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_one_at_a_time_run_on_the_backend_used_last() {
    let Some(db) =
        testing::fresh_db_or_skip("ingests_one_at_a_time_run_on_the_backend_used_last").await
    else {
        return;
    };
    let store = db.store.clone();
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let mut admin = PgConnection::connect(&db.url).await.unwrap();

    // A burst: concurrent ingests take several connections of the pool.
    let events: Vec<_> = (0..8).map(|i| event(&m, "Payment", t(i))).collect();
    let burst =
        futures::future::join_all(events.iter().map(|e| store.ingest(std::slice::from_ref(e))))
            .await;
    assert!(burst.iter().all(Result::is_ok), "{burst:?}");
    let opened = ingesting_backends(&mut admin, &db.schema, None).await;
    assert!(opened >= 2, "the burst ran on {opened} backend(s)");

    // Then one at a time, as at an everyday rate.
    let since: String = sqlx::query_scalar("SELECT clock_timestamp()::text")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    for i in 0..10 {
        let e = event(&m, "Payment", t(100 + i));
        store.ingest(std::slice::from_ref(&e)).await.unwrap();
    }
    assert_eq!(
        ingesting_backends(&mut admin, &db.schema, Some(&since)).await,
        1,
        "ten ingests in a row ran on one backend"
    );
}
