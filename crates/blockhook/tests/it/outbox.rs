//! The PostgreSQL transactional outbox, end to end with the real binary.
//!
//! - `outbox_schema_prints_ddl_and_refuses_bad_names`: `blockhook outbox schema` prints DDL
//!   PostgreSQL accepts, and a bad table name is a clear error (exit 2).
//! - `two_relays_and_a_sigkill_lose_and_duplicate_nothing`: a "gateway" commits 10,000 rows in
//!   1,000 transactions (and rolls some more back) while two `blockhook serve` processes relay
//!   the same outbox into one PostgreSQL store; one of them is SIGKILLed mid-relay and restarted.
//!   At the end every committed row is exactly one event and no rolled-back row is one:
//!   lost = 0, duplicates = 0.
//!
//! - `a_failing_gateway_is_logged_once_then_its_recovery`: while the gateway's outbox cannot be
//!   read (its table does not exist yet) the relay backs off, logging one WARN; once the table
//!   exists it relays, logging the recovery at INFO.
//!
//! PostgreSQL only (the outbox lives in PostgreSQL): each test prints a SKIP line and returns
//! when `BLOCKHOOK_TEST_DATABASE_URL` is unset.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::common::{Api, Backend, Conf, Server, free_port, ledger};

const TRANSACTIONS: u64 = 1_000;
const ROWS_PER_TX: u64 = 10;
/// Every 9th transaction is rolled back (on top of the 1,000 committed ones).
const ROLLBACK_EVERY: u64 = 9;

fn base_url(test: &str) -> Option<String> {
    let url = std::env::var("BLOCKHOOK_TEST_DATABASE_URL").ok();
    if url.is_none() {
        eprintln!("SKIP {test}: BLOCKHOOK_TEST_DATABASE_URL is not set (PostgreSQL only)");
    }
    url
}

fn blockhook(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_blockhook"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn outbox_schema_prints_ddl_and_refuses_bad_names() {
    let bad = blockhook(&["outbox", "schema", "--table", "Payments; DROP TABLE x"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--table") && err.contains("schema.name"),
        "{err}"
    );
    let Some(url) = base_url("outbox_schema_prints_ddl_and_refuses_bad_names") else {
        return;
    };
    let schema = format!("gw_cli_{}", uuid::Uuid::new_v4().simple());
    let table = format!("{schema}.outbox");
    let out = blockhook(&["outbox", "schema", "--table", &table, "--payload", "jsonb"]);
    assert!(out.status.success());
    let ddl = String::from_utf8(out.stdout).unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    // Twice: the DDL can be re-run (upgrades of the gateway's schema scripts).
    for _ in 0..2 {
        sqlx::raw_sql(&ddl).execute(&pool).await.unwrap();
    }
    let ty: String = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = $1 \
         AND table_name = 'outbox' AND column_name = 'payload'",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ty, "jsonb");
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// The gateway: `TRANSACTIONS` committed transactions of `ROWS_PER_TX` rows and the rolled-back
/// ones between them, from 4 connections. Even rows carry their own idempotency key, odd ones
/// rely on the relay's `outbox:<table>:<id>`. Returns the sequence numbers committed.
async fn gateway(pool: PgPool, table: String, merchant: String, done: Arc<AtomicU64>) -> Vec<u64> {
    let total = TRANSACTIONS + TRANSACTIONS / (ROLLBACK_EVERY - 1);
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (pool, table, merchant, done) =
            (pool.clone(), table.clone(), merchant.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            for tx_no in (t..total).step_by(4) {
                let mut tx = pool.begin().await.unwrap();
                let seqs: Vec<u64> = (tx_no * ROWS_PER_TX..(tx_no + 1) * ROWS_PER_TX).collect();
                for &seq in &seqs {
                    let key = (seq % 2 == 0).then(|| format!("gw-{seq}"));
                    sqlx::query(&format!(
                        "INSERT INTO {table} (merchant_id, event_type, payload, idempotency_key) \
                         VALUES ($1, 'Payment', $2, $3)"
                    ))
                    .bind(&merchant)
                    .bind(format!("{{\"seq\":{seq},\"amount\":\"1.00\"}}"))
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                }
                if tx_no % ROLLBACK_EVERY == ROLLBACK_EVERY - 1 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.extend(seqs);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            committed
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// `blockhook_outbox_rows_read_total` of one server (0 when absent or unreachable).
async fn rows_read(server: &Server) -> f64 {
    let Ok(r) = reqwest::get(format!("{}/metrics", server.base())).await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("blockhook_outbox_rows_read_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_and_a_sigkill_lose_and_duplicate_nothing() {
    let Some(base) = base_url("two_relays_and_a_sigkill_lose_and_duplicate_nothing") else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (store_schema, gw_schema) = (format!("bh_outbox_{id}"), format!("gw_outbox_{id}"));
    blockhook_store::postgres::schema::create(&base, &store_schema)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store_url = format!("{base}{sep}options=-c%20search_path%3D{store_schema}");
    let store = PgPool::connect(&store_url).await.unwrap();
    let gw = PgPool::connect(&base).await.unwrap();
    let table = format!("{gw_schema}.outbox");
    sqlx::raw_sql(&format!("CREATE SCHEMA {gw_schema}"))
        .execute(&gw)
        .await
        .unwrap();
    let out = blockhook(&["outbox", "schema", "--table", &table]);
    assert!(out.status.success());
    sqlx::raw_sql(&String::from_utf8(out.stdout).unwrap())
        .execute(&gw)
        .await
        .unwrap();

    let conf = Conf {
        extra: format!(
            "[[sources.postgres_outbox]]\nurl = \"{base}\"\ntable = \"{table}\"\nbatch = 200\n\
             poll = \"1s\"\n"
        ),
        ..Conf::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let backend = Backend::Postgres(store_url.clone());
    let mut a = Server::start_with(
        tmp.path(),
        "a",
        free_port(),
        backend.clone(),
        &conf,
        &[],
        &[],
    );
    a.ready().await;
    let mut b = Server::start_with(tmp.path(), "b", free_port(), backend, &conf, &[], &[]);
    b.ready().await;
    let merchant = Api::new(a.base()).merchant("outbox").await;

    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(gateway(
        gw.clone(),
        table.clone(),
        merchant.clone(),
        done.clone(),
    ));
    let events = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // SIGKILL one relay once about a third has been relayed, then start it again.
    let deadline = Instant::now() + Duration::from_secs(300);
    while events(store.clone()).await < 3_000 {
        assert!(Instant::now() < deadline, "relay made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both relays are at work before one is killed (SKIP LOCKED shares the rows out).
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows_read(&a).await == 0.0 || rows_read(&b).await == 0.0 {
        assert!(
            Instant::now() < deadline,
            "one relay never read a row (a: {}, b: {})",
            rows_read(&a).await,
            rows_read(&b).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill();
    let killed_at = events(store.clone()).await;
    a.restart().await;
    let committed = writer.await.unwrap();
    assert_eq!(committed.len() as u64, TRANSACTIONS * ROWS_PER_TX);

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&gw)
            .await
            .unwrap();
        if left == 0 && events(store.clone()).await >= committed.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outbox not drained: {left} rows left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every event, by the sequence number in its payload and by its idempotency key.
    let rows: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT payload, idempotency_key FROM events WHERE merchant_id = $1")
            .bind(&merchant)
            .fetch_all(&store)
            .await
            .unwrap();
    let mut per_seq: HashMap<u64, usize> = HashMap::new();
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for (payload, key) in &rows {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        *per_seq.entry(v["seq"].as_u64().unwrap()).or_default() += 1;
        *per_key.entry(key.clone()).or_default() += 1;
    }
    let lost = committed
        .iter()
        .filter(|s| !per_seq.contains_key(s))
        .count();
    let duplicates: usize = per_seq.values().map(|n| n - 1).sum::<usize>()
        + per_key.values().map(|n| n - 1).sum::<usize>();
    let committed_set: std::collections::HashSet<u64> = committed.iter().copied().collect();
    let rolled_back = per_seq
        .keys()
        .filter(|s| !committed_set.contains(s))
        .count();
    let dead: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}_dead_letter"))
        .fetch_one(&gw)
        .await
        .unwrap();
    ledger(&format!(
        "outbox: committed={} events={} lost={lost} duplicates={duplicates} \
         rolled_back_relayed={rolled_back} dead_lettered={dead} killed_at={killed_at} \
         committed_transactions={}",
        committed.len(),
        rows.len(),
        done.load(Ordering::Relaxed)
    ));
    assert_eq!(lost, 0, "lost rows");
    assert_eq!(duplicates, 0, "duplicated rows");
    assert_eq!(rolled_back, 0, "rolled-back rows became events");
    assert_eq!(dead, 0, "valid rows dead-lettered");
    assert_eq!(rows.len(), committed.len());
    // The derived keys name the table; the gateway's own keys are kept.
    assert!(
        per_key
            .keys()
            .any(|k| k.starts_with(&format!("outbox:{table}:")))
    );
    assert!(per_key.contains_key("gw-0"));

    drop(b);
    drop(a);
    store.close().await;
    let _ = sqlx::raw_sql(&format!("DROP SCHEMA {gw_schema} CASCADE"))
        .execute(&gw)
        .await;
    gw.close().await;
    let _ = blockhook_store::postgres::schema::drop(&base, &store_schema).await;
}

#[tokio::test]
async fn a_failing_gateway_is_logged_once_then_its_recovery() {
    let Some(base) = base_url("a_failing_gateway_is_logged_once_then_its_recovery") else {
        return;
    };
    let schema = format!("gw_outage_{}", uuid::Uuid::new_v4().simple());
    let table = format!("{schema}.outbox");
    let conf = Conf {
        extra: format!(
            "[[sources.postgres_outbox]]\nurl = \"{base}\"\ntable = \"{table}\"\npoll = \"100ms\"\n"
        ),
        ..Conf::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), free_port(), Backend::Sqlite, &conf);
    server.ready().await;
    let merchant = Api::new(server.base()).merchant("outage").await;
    // Let several passes fail (backoff 0.1 s doubling) before the table appears.
    let deadline = Instant::now() + Duration::from_secs(60);
    server
        .wait_for_log(
            "outbox relay failed",
            deadline,
            "the failing relay logged nothing",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let gw = PgPool::connect(&base).await.unwrap();
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&gw)
        .await
        .unwrap();
    let out = blockhook(&["outbox", "schema", "--table", &table]);
    sqlx::raw_sql(&String::from_utf8(out.stdout).unwrap())
        .execute(&gw)
        .await
        .unwrap();
    sqlx::query(&format!(
        "INSERT INTO {table} (merchant_id, event_type, payload) VALUES ($1, 'Payment', '{{}}')"
    ))
    .bind(&merchant)
    .execute(&gw)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&gw)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the row was never relayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The row can be gone before the recovery's log line has come through the server's pipe.
    server
        .wait_for_log(
            "outbox relay recovered",
            deadline,
            "the recovery was never logged",
        )
        .await;
    let log = String::from_utf8_lossy(&server.logs()).into_owned();
    let lines = |level: &str, text: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("\"{level}\"")) && l.contains(text))
            .count()
    };
    assert_eq!(lines("WARN", "outbox relay failed"), 1, "{log}");
    assert_eq!(lines("INFO", "outbox relay recovered"), 1, "{log}");
    assert!(!log.contains("\"ERROR\""), "{log}");
    drop(server);
    let _ = sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&gw)
        .await;
    gw.close().await;
}
