//! Two stores on one PostgreSQL schema, as two blockhook processes share a database: whatever one
//! of them (or an operator's `UPDATE`) changes about a merchant's endpoints, the other's very next
//! ingest fans out accordingly, though it keeps the targets it read between ingests (and reads
//! them again only when they changed).
//!
//! Needs `BLOCKHOOK_TEST_DATABASE_URL`; without it the test prints why it skips and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use blockhook_core::{Error, EventFilter, MerchantStatus, StoreRef};
use blockhook_store::contract::fixtures::{endpoint, event, merchant, set_enabled, t};
use blockhook_store::postgres::testing;
use sqlx::{Connection, PgConnection};

/// Deliveries `ingesting` creates for one event of `m`.
async fn fan_out(ingesting: &StoreRef, m: &blockhook_core::MerchantId, at: i64) -> u32 {
    let done = ingesting.ingest(&[event(m, "Payment", t(at))]).await;
    done.unwrap()[0].deliveries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_endpoint_changes_reach_the_next_ingest() {
    let Some(db) =
        testing::fresh_db_or_skip("another_instances_endpoint_changes_reach_the_next_ingest").await
    else {
        return;
    };
    let (a, b) = (db.store.clone(), db.another_store().await);
    let m = merchant(&a).await;
    let first = endpoint(&a, &m, &[]).await;
    assert_eq!(fan_out(&a, &m, 1).await, 1);
    let before = a.statements();
    assert_eq!(fan_out(&a, &m, 11).await, 1);
    assert_eq!(
        a.statements() - before,
        1,
        "a merchant seen lately costs the ingest statement alone"
    );

    let second = endpoint(&b, &m, &["Payout"]).await;
    let before = a.statements();
    assert_eq!(fan_out(&a, &m, 2).await, 1, "added elsewhere, filtered out");
    assert_eq!(
        a.statements() - before,
        3,
        "a change elsewhere: the ingest statement refused, the targets read again, stored"
    );
    let mut edited = b.get_endpoint(&m, &second.id).await.unwrap();
    edited.filter = EventFilter::all();
    b.update_endpoint(&edited).await.unwrap();
    assert_eq!(fan_out(&a, &m, 3).await, 2, "filter edited elsewhere");

    set_enabled(&b, &first, false).await;
    assert_eq!(fan_out(&a, &m, 4).await, 1, "disabled elsewhere");

    // An operator's statement, outside any blockhook process.
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let edit = format!(
        "UPDATE {}.endpoints SET event_types = '[\"Refund\"]' WHERE id = $1",
        db.schema
    );
    sqlx::query(&edit)
        .bind(second.id.as_str())
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(fan_out(&a, &m, 5).await, 0, "filter changed by hand");

    b.set_merchant_status(&m, MerchantStatus::Suspended)
        .await
        .unwrap();
    let r = a.ingest(&[event(&m, "Payment", t(6))]).await;
    assert!(
        matches!(r, Err(Error::Conflict(_))),
        "suspended elsewhere: {r:?}"
    );
    b.set_merchant_status(&m, MerchantStatus::Active)
        .await
        .unwrap();
    set_enabled(&b, &first, true).await;
    assert_eq!(fan_out(&a, &m, 7).await, 1, "active and enabled again");

    b.delete_merchant(&m).await.unwrap();
    let r = a.ingest(&[event(&m, "Payment", t(8))]).await;
    assert!(
        matches!(r, Err(Error::NotFound("merchant"))),
        "deleted elsewhere: {r:?}"
    );
}
