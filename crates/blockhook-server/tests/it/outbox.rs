//! The PostgreSQL transactional outbox relay against a real "gateway" database: the DDL
//! `blockhook outbox schema` prints, rows inserted as a gateway would, events with deliveries in
//! blockhook's store (SQLite and PostgreSQL), bad rows dead-lettered with their reasons, a
//! NOTIFY waking the relay long before its poll interval, and the relay's metrics.
//!
//! Each test run gets a gateway schema of its own (`gw_<uuid>`) in the database named by
//! `BLOCKHOOK_TEST_DATABASE_URL`; without it the tests say they were skipped.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use blockhook_store::outbox::{OutboxTable, PayloadColumn, schema_sql};

use crate::helpers::{ADMIN, PAYMENT, TestApp, backends};
use crate::receiver::Receiver;

/// The gateway's database, or `None` (the test is skipped) without the variable.
fn gateway_url() -> Option<String> {
    let url = std::env::var("BLOCKHOOK_TEST_DATABASE_URL").ok();
    if url.is_none() {
        eprintln!("outbox tests skipped: BLOCKHOOK_TEST_DATABASE_URL not set");
    }
    url
}

/// A fresh gateway schema holding the outbox `<schema>.outbox` made from the printed DDL.
struct GatewayDb {
    url: String,
    schema: String,
    table: String,
    /// `::jsonb` for a jsonb payload column (a text parameter is not assigned to it implicitly).
    cast: &'static str,
}

impl GatewayDb {
    async fn create(url: &str, payload: PayloadColumn) -> Self {
        let schema = format!("gw_{}", uuid::Uuid::new_v4().simple());
        let table = format!("{schema}.outbox");
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let ddl = schema_sql(&OutboxTable::parse(&table).unwrap(), payload);
        sqlx::raw_sql(&ddl).execute(&mut conn).await.unwrap();
        let cast = match payload {
            PayloadColumn::Text => "",
            PayloadColumn::Jsonb => "::jsonb",
        };
        Self {
            url: url.to_owned(),
            schema,
            table,
            cast,
        }
    }

    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// Inserts one row in its own transaction, as a gateway's payment transaction would.
    async fn insert(
        &self,
        merchant: &str,
        event_type: &str,
        payload: &str,
        ordering_key: Option<&str>,
        idempotency_key: Option<&str>,
    ) {
        let mut conn = self.conn().await;
        sqlx::query(&format!(
            "INSERT INTO {} (merchant_id, event_type, payload, ordering_key, idempotency_key) \
             VALUES ($1, $2, $3{}, $4, $5)",
            self.table, self.cast
        ))
        .bind(merchant)
        .bind(event_type)
        .bind(payload)
        .bind(ordering_key)
        .bind(idempotency_key)
        .execute(&mut conn)
        .await
        .unwrap();
    }

    async fn count(&self, table: &str) -> i64 {
        let mut conn = self.conn().await;
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    /// (id, reason) of the dead-lettered rows, by id.
    async fn dead_letters(&self) -> Vec<(i64, String)> {
        let mut conn = self.conn().await;
        sqlx::query_as(&format!(
            "SELECT id, reason FROM {}_dead_letter ORDER BY id",
            self.table
        ))
        .fetch_all(&mut conn)
        .await
        .unwrap()
    }

    async fn drop_it(self) {
        let mut conn = self.conn().await;
        let _ = sqlx::raw_sql(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&mut conn)
            .await;
    }
}

/// Waits (up to a generous bound, not a timing assertion) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sample(scrape: &str, metric: &str, table: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(metric) && l.contains(&format!("table=\"{table}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn rows_become_events_bad_rows_are_dead_lettered_and_notify_wakes_the_relay() {
    let Some(url) = gateway_url() else { return };
    for backend in backends() {
        let gw = GatewayDb::create(&url, PayloadColumn::Text).await;
        let (source_url, table) = (url.clone(), gw.table.clone());
        // An hour between polls: every row below arrives because a NOTIFY woke the relay.
        let app = TestApp::spawn_with(backend, |s| {
            s.sources.postgres_outbox = vec![blockhook_server::config::PostgresOutboxSource {
                url: source_url,
                table,
                batch: 3,
                poll: Duration::from_secs(3600),
            }];
        })
        .await;
        let receiver = Receiver::ok(Some(&app.ca)).await;
        let merchant = app.merchant().await;
        app.endpoint(&merchant, &receiver.url(), json!({})).await;

        // Good rows: the exact payload bytes, an explicit idempotency key, an ordering key.
        let spaced = r#"{ "b": 2,  "a": "1.50" }"#;
        gw.insert(&merchant, "Payment", PAYMENT, None, None).await;
        gw.insert(&merchant, "Payout", spaced, Some("order-1"), Some("pay-1"))
            .await;
        // Bad rows, each for another reason, between good ones: none may block the rest.
        let unknown = "mch_00000000000000000000000000";
        gw.insert(unknown, "Payment", "{}", None, None).await;
        gw.insert(&merchant, "Payment", "{\"a\":", None, None).await;
        gw.insert(&merchant, "bad type", "{}", None, None).await;
        gw.insert(&merchant, "Payment", "[1, 2]", None, None).await;
        gw.insert(&merchant, "Payment", "{}", None, Some("has space"))
            .await;
        gw.insert(&merchant, "QR-Payment", "{\"n\":3}", None, None)
            .await;

        let got = receiver.wait_for(3, Duration::from_secs(120)).await;
        let mut bodies: Vec<&[u8]> = got.iter().map(|r| &r.body[..]).collect();
        bodies.sort();
        let mut want: Vec<&[u8]> = vec![PAYMENT.as_bytes(), spaced.as_bytes(), b"{\"n\":3}"];
        want.sort();
        assert_eq!(bodies, want, "{backend:?}: payloads byte for byte");

        let gw_ref = &gw;
        eventually("the outbox drained", move || async move {
            gw_ref.count(&gw_ref.table).await == 0
        })
        .await;
        let dead = gw.dead_letters().await;
        let reasons: Vec<&str> = dead.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(dead.len(), 5, "{backend:?}: {reasons:?}");
        for (reason, field) in reasons.iter().zip([
            "merchant_id",
            "payload",
            "event_type",
            "payload",
            "idempotency_key",
        ]) {
            assert!(reason.starts_with(field), "{backend:?}: {reason}");
        }

        // The events, with the keys they were stored under.
        let r = app
            .get(&format!("/v1/merchants/{merchant}/events?limit=50"), ADMIN)
            .await;
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        let mut keys: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["idempotency_key"].as_str().unwrap_or_default().to_owned())
            .collect();
        keys.sort();
        let first_id = dead[0].0 - 2; // the first row, two before the unknown merchant's
        assert_eq!(
            keys,
            vec![
                format!("outbox:{}:{first_id}", gw.table),
                format!("outbox:{}:{}", gw.table, first_id + 7),
                "pay-1".to_owned(),
            ],
            "{backend:?}"
        );

        // The counters move just after the gateway commit: wait for them to settle.
        let app_ref = &app;
        let scrape = move || async move {
            app_ref
                .http
                .get(format!("{}/metrics", app_ref.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        eventually("the relay's counters settled", move || async move {
            let text = scrape().await;
            sample(&text, "blockhook_outbox_rows_ingested_total", &gw_ref.table) == Some(3.0)
                && sample(
                    &text,
                    "blockhook_outbox_rows_dead_lettered_total",
                    &gw_ref.table,
                ) == Some(5.0)
        })
        .await;
        let metrics = scrape().await;
        let m = |name: &str| sample(&metrics, name, &gw.table);
        assert_eq!(
            m("blockhook_outbox_rows_read_total"),
            Some(8.0),
            "{metrics}"
        );
        assert!(
            m("blockhook_outbox_lag_seconds").is_some(),
            "lag gauge missing:\n{metrics}"
        );
        app.stop().await;
        gw.drop_it().await;
    }
}

#[tokio::test]
async fn a_jsonb_outbox_relays_too() {
    let Some(url) = gateway_url() else { return };
    let gw = GatewayDb::create(&url, PayloadColumn::Jsonb).await;
    let (source_url, table) = (url.clone(), gw.table.clone());
    let app = TestApp::spawn_with(backends()[0], |s| {
        s.sources.postgres_outbox = vec![blockhook_server::config::PostgresOutboxSource {
            url: source_url,
            table,
            batch: 500,
            poll: Duration::from_millis(200),
        }];
    })
    .await;
    let receiver = Receiver::ok(Some(&app.ca)).await;
    let merchant = app.merchant().await;
    app.endpoint(&merchant, &receiver.url(), json!({})).await;
    gw.insert(&merchant, "Payment", r#"{"amount": "2.00"}"#, None, None)
        .await;
    let got = receiver.wait_for(1, Duration::from_secs(120)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body, json!({ "amount": "2.00" }));
    app.stop().await;
    gw.drop_it().await;
}

#[tokio::test]
async fn a_gateway_outbox_that_fails_is_retried_until_it_works() {
    let Some(url) = gateway_url() else { return };
    // The relay starts before the gateway's table exists: every pass fails (logged once at
    // WARN), and it backs off and retries until the table is there.
    let schema = format!("gw_{}", uuid::Uuid::new_v4().simple());
    let table = format!("{schema}.outbox");
    let (source_url, source_table) = (url.clone(), table.clone());
    let app = TestApp::spawn_with(backends()[0], |s| {
        s.sources.postgres_outbox = vec![blockhook_server::config::PostgresOutboxSource {
            url: source_url,
            table: source_table,
            batch: 500,
            poll: Duration::from_millis(100),
        }];
    })
    .await;
    let receiver = Receiver::ok(Some(&app.ca)).await;
    let merchant = app.merchant().await;
    app.endpoint(&merchant, &receiver.url(), json!({})).await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let ddl = schema_sql(&OutboxTable::parse(&table).unwrap(), PayloadColumn::Text);
    sqlx::raw_sql(&ddl).execute(&mut conn).await.unwrap();
    let gw = GatewayDb {
        url: url.clone(),
        schema,
        table,
        cast: "",
    };
    gw.insert(&merchant, "Payment", PAYMENT, None, None).await;
    let got = receiver.wait_for(1, Duration::from_secs(120)).await;
    assert_eq!(&got[0].body[..], PAYMENT.as_bytes());
    app.stop().await;
    gw.drop_it().await;
}
