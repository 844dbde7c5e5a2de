//! Upgrades: a database made by the first released schema (only migration 0001 applied), holding
//! data, is upgraded and its data read back; SQLite upgrades itself after copying the file beside
//! it, PostgreSQL refuses to serve an older schema until `blockhook migrate` (an `Apply` open)
//! has run; a schema newer than this release knows is refused on both, naming both versions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;

use blockhook_core::{EndpointId, EventId, MerchantId, Store};
use blockhook_store::{StoreOptions, Upgrade};

const PAYLOAD: &[u8] = br#"{"orderNo":"A1","amount":"2000.00"}"#;

struct Ids {
    merchant: MerchantId,
    endpoint: EndpointId,
    event: EventId,
}

fn ids() -> Ids {
    Ids {
        merchant: MerchantId::generate(),
        endpoint: EndpointId::generate(),
        event: EventId::generate(),
    }
}

/// The migrator of the first release: migration 0001 only.
macro_rules! first_release {
    ($dir:literal) => {{
        let mut m = sqlx::migrate!($dir);
        m.migrations = Cow::Owned(m.migrations[..1].to_vec());
        m
    }};
}

async fn check_data(store: &dyn Store, ids: &Ids) {
    let m = store.get_merchant(&ids.merchant).await.unwrap();
    assert_eq!(m.name, "First release");
    let ep = store
        .get_endpoint(&ids.merchant, &ids.endpoint)
        .await
        .unwrap();
    assert_eq!(ep.url.as_str(), "https://merchant.example/hook");
    assert_eq!(ep.secret.as_stored(), vec![7u8; 40]);
    let ev = store.get_event(&ids.merchant, &ids.event).await.unwrap();
    assert_eq!(&ev.payload.unwrap().bytes()[..], PAYLOAD);
    // The tables the upgrade added are there.
    assert_eq!(store.key_check().await.unwrap(), None);
}

fn refused(result: Result<impl Sized, blockhook_core::Error>) -> String {
    match result {
        Ok(_) => panic!("must be refused"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn sqlite_upgrades_a_first_release_database_after_copying_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blockhook.db");
    let ids = ids();
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        first_release!("migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        for (sql, args) in [
            (
                "INSERT INTO merchants (id, name, status, created_at) \
                 VALUES (?1, 'First release', 'active', 1)",
                vec![ids.merchant.to_string()],
            ),
            (
                "INSERT INTO endpoints (id, merchant_id, url, description, event_types, \
                 signing_mode, success_policy, headers, rate_limit, label, enabled, \
                 disabled_reason, secret, created_at, updated_at) VALUES (?1, ?2, \
                 'https://merchant.example/hook', NULL, '[]', 'sorted', '200', '[]', NULL, NULL, \
                 1, NULL, x'07070707070707070707070707070707070707070707070707070707070707070707070707070707', 1, 1)",
                vec![ids.endpoint.to_string(), ids.merchant.to_string()],
            ),
            (
                "INSERT INTO events (id, merchant_id, event_type, payload, idempotency_key, \
                 created_at) VALUES (?1, ?2, 'Payment', CAST(?3 AS BLOB), NULL, 1)",
                vec![
                    ids.event.to_string(),
                    ids.merchant.to_string(),
                    String::from_utf8(PAYLOAD.to_vec()).unwrap(),
                ],
            ),
        ] {
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(a);
            }
            q.execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    let url = path.to_string_lossy().into_owned();
    let store = blockhook_store::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    check_data(&*store, &ids).await;
    let copies: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("blockhook.db.schema-v1-") && n.ends_with(".bak"))
        .collect();
    assert_eq!(copies.len(), 1, "one copy of the version-1 file beside it");
    drop(store);

    // A schema from the future is refused, naming both versions.
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (9999, 'from the future', 1, x'00', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let err = refused(blockhook_store::open(&url, &StoreOptions::default()).await);
    assert!(
        err.contains("version 9999") && err.contains("newer"),
        "{err}"
    );
    assert!(
        err.contains("version 5"),
        "names the version it knows: {err}"
    );
}

#[tokio::test]
async fn postgres_asks_for_migrate_then_upgrades_a_first_release_database() {
    let Ok(base) = std::env::var("BLOCKHOOK_TEST_DATABASE_URL") else {
        eprintln!("SKIP postgres upgrade: BLOCKHOOK_TEST_DATABASE_URL is not set");
        return;
    };
    let schema = format!("bh_upgrade_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let ids = ids();
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        first_release!("migrations/postgres")
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO merchants (id, name, status, created_at) \
             VALUES ($1, 'First release', 'active', 1)",
        )
        .bind(ids.merchant.as_str())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO endpoints (id, merchant_id, url, description, event_types, \
             signing_mode, success_policy, headers, rate_limit, label, enabled, \
             disabled_reason, secret, created_at, updated_at) VALUES ($1, $2, \
             'https://merchant.example/hook', NULL, '[]', 'sorted', '200', '[]', NULL, NULL, \
             TRUE, NULL, $3, 1, 1)",
        )
        .bind(ids.endpoint.as_str())
        .bind(ids.merchant.as_str())
        .bind(vec![7u8; 40])
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO events (id, merchant_id, event_type, payload, idempotency_key, \
             created_at) VALUES ($1, $2, 'Payment', $3, NULL, 1)",
        )
        .bind(ids.event.as_str())
        .bind(ids.merchant.as_str())
        .bind(PAYLOAD)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    // `serve` (FreshOnly) refuses the older schema and says what to run.
    let serve = StoreOptions {
        upgrade: Upgrade::FreshOnly,
        ..StoreOptions::default()
    };
    let err = refused(blockhook_store::open(&url, &serve).await);
    assert!(
        err.contains("blockhook migrate") && err.contains("version 1"),
        "{err}"
    );
    // `migrate` (Apply) upgrades it with its data; then `serve` opens it.
    drop(
        blockhook_store::open(&url, &StoreOptions::default())
            .await
            .unwrap(),
    );
    let store = blockhook_store::open(&url, &serve).await.unwrap();
    check_data(&*store, &ids).await;
    drop(store);

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = refused(blockhook_store::open(&url, &StoreOptions::default()).await);
    assert!(
        err.contains("version 9999") && err.contains("version 5"),
        "{err}"
    );
    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await;
    admin.close().await;
}

#[tokio::test]
async fn a_database_that_does_not_exist_says_how_to_create_it() {
    let Ok(base) = std::env::var("BLOCKHOOK_TEST_DATABASE_URL") else {
        eprintln!("SKIP postgres missing database: BLOCKHOOK_TEST_DATABASE_URL is not set");
        return;
    };
    let Some((server, _)) = base.rsplit_once('/') else {
        panic!("unexpected URL {base}");
    };
    let missing = format!("bh_missing_{}", uuid::Uuid::new_v4().simple());
    let err = refused(
        blockhook_store::open(&format!("{server}/{missing}"), &StoreOptions::default()).await,
    );
    assert!(
        err.contains("does not exist") && err.contains("createdb") && err.contains(&missing),
        "{err}"
    );
}
