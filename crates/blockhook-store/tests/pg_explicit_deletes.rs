//! PostgreSQL has no foreign keys from deliveries to events and from attempts to deliveries
//! (migration 12), so attempts do not cascade: deleting an endpoint or a merchant deletes them
//! itself. Checked by SQL on the test's schema, since no store call can find an attempt whose
//! delivery is gone: nothing of a deleted endpoint or merchant is left, the other endpoint's and
//! merchant's rows are, and a finish in flight during the delete (its delivery locked, its
//! attempt not yet committed) leaves no attempt behind either.
//!
//! Needs `BLOCKHOOK_TEST_DATABASE_URL`; without it every test prints why it skips and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use blockhook_core::{EndpointId, MerchantId, Next, StoreRef};
use blockhook_store::contract::fixtures::{
    claim_all, endpoint, finish_one, ingest_one, merchant, merchant_named, t,
};
use blockhook_store::postgres::testing::{self, TestDb};
use sqlx::{Connection, PgConnection};

/// A connection outside the store, on the test's schema.
async fn admin(db: &TestDb) -> PgConnection {
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    // The schema name is the test's own (hex digits only).
    sqlx::query(&format!("SET search_path TO {}", db.schema))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// `SELECT count(*) FROM <table> WHERE <column> = $1`.
async fn rows(admin: &mut PgConnection, table: &str, column: &str, value: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column} = $1"))
        .bind(value)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Attempts whose delivery no longer exists.
async fn orphan_attempts(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM attempts a \
         WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)",
    )
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Ingests `events` events for `m` and finishes every delivery due (one attempt each), so that
/// each endpoint of `m` has `events` deliveries and `events` attempts.
async fn deliver(store: &StoreRef, m: &MerchantId, events: i64, at: i64) {
    for i in 0..events {
        ingest_one(store, m, "Payment", t(at + i)).await;
    }
    for c in claim_all(store, t(at + events)).await {
        finish_one(store, &c, Next::RetryAt(t(at + 1000)), t(at + events)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_endpoint_then_its_merchant_leaves_none_of_their_rows() {
    let test = "deleting_an_endpoint_then_its_merchant_leaves_none_of_their_rows";
    let Some(db) = testing::fresh_db_or_skip(test).await else {
        return;
    };
    let store = db.store.clone();
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let doomed = endpoint(&store, &m, &[]).await;
    let kept = endpoint(&store, &m, &[]).await;
    let other_ep = endpoint(&store, &other, &[]).await;
    deliver(&store, &m, 2, 0).await;
    deliver(&store, &other, 1, 0).await;
    let mut admin = admin(&db).await;
    for ep in [&doomed.id, &kept.id] {
        assert_eq!(
            rows(&mut admin, "deliveries", "endpoint_id", ep.as_str()).await,
            2
        );
        assert_eq!(
            rows(&mut admin, "attempts", "endpoint_id", ep.as_str()).await,
            2
        );
    }

    store.delete_endpoint(&m, &doomed.id).await.unwrap();

    let id = doomed.id.as_str();
    assert_eq!(rows(&mut admin, "deliveries", "endpoint_id", id).await, 0);
    assert_eq!(
        rows(&mut admin, "attempts", "endpoint_id", id).await,
        0,
        "the deleted endpoint's attempts"
    );
    assert_eq!(orphan_attempts(&mut admin).await, 0);
    let id = kept.id.as_str();
    assert_eq!(rows(&mut admin, "deliveries", "endpoint_id", id).await, 2);
    assert_eq!(rows(&mut admin, "attempts", "endpoint_id", id).await, 2);
    assert_eq!(
        rows(&mut admin, "events", "merchant_id", m.as_str()).await,
        2
    );

    store.delete_merchant(&m).await.unwrap();

    let id = m.as_str();
    for table in ["deliveries", "events", "event_search", "endpoints"] {
        assert_eq!(
            rows(&mut admin, table, "merchant_id", id).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        rows(&mut admin, "attempts", "endpoint_id", kept.id.as_str()).await,
        0,
        "the deleted merchant's attempts"
    );
    assert_eq!(orphan_attempts(&mut admin).await, 0);
    // The other merchant's rows are all there.
    let id = other.as_str();
    for table in ["deliveries", "events", "event_search", "endpoints"] {
        assert_eq!(
            rows(&mut admin, table, "merchant_id", id).await,
            1,
            "{table}"
        );
    }
    let id = other_ep.id.as_str();
    assert_eq!(rows(&mut admin, "attempts", "endpoint_id", id).await, 1);
}

/// Takes a delivery of `endpoint` as a finish does (updates it and logs its attempt) in a
/// transaction left open, runs `delete` meanwhile, waits until it waits for the delivery's row
/// lock, then commits: the delete must remove the attempt committed under it.
async fn delete_during_a_finish<F>(db: &TestDb, endpoint: &EndpointId, delete: F)
where
    F: Future<Output = Result<(), blockhook_core::Error>> + Send + 'static,
{
    let mut admin = admin(db).await;
    let delivery: String =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE endpoint_id = $1 LIMIT 1")
            .bind(endpoint.as_str())
            .fetch_one(&mut admin)
            .await
            .unwrap();
    let mut finish = admin.begin().await.unwrap();
    sqlx::query("UPDATE deliveries SET attempts = attempts + 1 WHERE id = $1")
        .bind(&delivery)
        .execute(&mut *finish)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO attempts (id, delivery_id, endpoint_id, number, started_at, url, \
            request_headers, status, response_headers, response_body, response_truncated, \
            latency_ms) \
         VALUES ('att_in_flight', $1, $2, 9, 0, 'https://receiver.example/hook', '[]', 200, \
            '[]', '\\x', false, 1)",
    )
    .bind(&delivery)
    .bind(endpoint.as_str())
    .execute(&mut *finish)
    .await
    .unwrap();

    let deleting = tokio::spawn(delete);
    // The store's sessions are named after the schema; wait until one of them waits for a lock.
    let mut watch = PgConnection::connect(&db.url).await.unwrap();
    let since = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&db.schema)
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the delete never waited for the finish's row lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    finish.commit().await.unwrap();
    deleting.await.unwrap().unwrap();

    assert_eq!(
        rows(&mut admin, "attempts", "endpoint_id", endpoint.as_str()).await,
        0,
        "the attempt the finish committed during the delete"
    );
    assert_eq!(orphan_attempts(&mut admin).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_in_flight_during_a_delete_leaves_no_attempt() {
    let test = "a_finish_in_flight_during_a_delete_leaves_no_attempt";
    let Some(db) = testing::fresh_db_or_skip(test).await else {
        return;
    };
    let store = db.store.clone();
    let m = merchant(&store).await;
    let first = endpoint(&store, &m, &[]).await;
    let second = endpoint(&store, &m, &[]).await;
    deliver(&store, &m, 1, 0).await;

    let (s, mm, id) = (store.clone(), m.clone(), first.id.clone());
    delete_during_a_finish(
        &db,
        &first.id,
        async move { s.delete_endpoint(&mm, &id).await },
    )
    .await;
    let (s, mm) = (store.clone(), m.clone());
    delete_during_a_finish(&db, &second.id, async move { s.delete_merchant(&mm).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_two_hot_path_keys_are_dropped() {
    let Some(db) = testing::fresh_db_or_skip("only_the_two_hot_path_keys_are_dropped").await else {
        return;
    };
    let mut admin = admin(&db).await;
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint \
         WHERE contype = 'f' AND connamespace = $1::regnamespace",
    )
    .bind(&db.schema)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for gone in ["deliveries_event_id_fkey", "attempts_delivery_id_fkey"] {
        assert!(!keys.iter().any(|k| k == gone), "{gone} in {keys:?}");
    }
    for kept in ["deliveries_endpoint_id_fkey", "events_merchant_id_fkey"] {
        assert!(keys.iter().any(|k| k == kept), "{kept} not in {keys:?}");
    }
}
