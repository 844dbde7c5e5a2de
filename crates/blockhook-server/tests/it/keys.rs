//! Master keys across processes: the key check value refuses a process whose key is not the
//! database's, PostgreSQL never generates keys, and a rotation re-seals every secret while the
//! server runs. Every test on both stores where a store is involved.

use std::sync::Arc;

use serde_json::{Value, json};

use blockhook_core::{SealedSecret, SecretSlot};
use blockhook_server::keyring;
use blockhook_server::keys::MasterKey;
use blockhook_server::{Application, Settings};

use crate::helpers::{ADMIN, Backend, TestApp, backends, store_url, test_settings};
use crate::receiver::TestCa;

const K1: &str = "a2V5LW9uZS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc=";
const K2: &str = "a2V5LXR3by0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc=";

/// Settings on a fresh store (file or schema) in `dir`, with `key` as keys.master_key.
async fn settings_with_key(backend: Backend, dir: &std::path::Path, key: &str) -> Settings {
    let ca = TestCa::new();
    let mut s = test_settings(dir, store_url(backend, dir).await, &ca);
    s.keys.master_key = key.into();
    s
}

async fn build_error(settings: Settings) -> String {
    match Application::build(settings).await {
        Ok(_) => panic!("the process must refuse to start"),
        Err(e) => e.to_string(),
    }
}

/// A running app on `settings`, with a fresh CA and working directory.
async fn start(backend: Backend, settings: Settings) -> TestApp {
    TestApp::start(
        backend,
        settings,
        Arc::new(TestCa::new()),
        tempfile::tempdir().unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_process_whose_key_does_not_open_the_database_refuses_to_start() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let with_k1 = settings_with_key(backend, dir.path(), K1).await;
        let app = start(backend, with_k1.clone()).await;
        let m = app.merchant().await;
        app.endpoint(&m, "https://127.0.0.1:9/hook", json!({}))
            .await;
        app.stop().await;

        let mut with_k2 = with_k1.clone();
        with_k2.keys.master_key = K2.into();
        let err = build_error(with_k2.clone()).await;
        assert!(
            err.contains("does not open") && err.contains("keys.master_key"),
            "{backend:?}: {err}"
        );
        assert!(err.contains("BLOCKHOOK_KEYS__MASTER_KEY"), "{err}");

        // A database from before the check value: the first process must open an existing
        // secret before its key becomes the reference.
        forget_key_check(&with_k1.store_url()).await;
        let err = build_error(with_k2).await;
        assert!(err.contains("the secret of endpoint"), "{backend:?}: {err}");
        // The right key still starts, and writes the check value again.
        drop(Application::build(with_k1.clone()).await.unwrap());
        let app = Application::build(with_k1).await.unwrap();
        assert!(app.state().store.key_check().await.unwrap().is_some());
    }
}

/// Deletes the key check value, as in a database from before it existed.
async fn forget_key_check(url: &str) {
    const DELETE: &str = "DELETE FROM key_check";
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(DELETE).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(DELETE).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[tokio::test]
async fn the_embedded_store_generates_its_key_and_checks_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let generated = settings_with_key(Backend::Sqlite, dir.path(), "").await;
    let app = Application::build(generated.clone()).await.unwrap();
    drop(app);
    let key_file = dir.path().join("master.key");
    assert!(key_file.exists(), "generated into the data directory");
    // Another key in the file (a data directory put together from two backups, say).
    std::fs::write(&key_file, K2).unwrap();
    let err = build_error(generated).await;
    assert!(
        err.contains("does not open") && err.contains("master.key"),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_needs_configured_keys_and_makes_no_data_directory() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings_with_key(Backend::Postgres, dir.path(), "").await;
    let data_dir = dir.path().join("data");
    s.store.data_dir = data_dir.clone();
    s.server.admin_token = String::new();

    let err = build_error(s.clone()).await;
    assert!(
        err.contains("keys.master_key_file") && err.contains("blockhook keys generate"),
        "{err}"
    );
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, format!("{K1}\n")).unwrap();
    s.keys.master_key_file = key_file.display().to_string();
    let err = build_error(s.clone()).await;
    assert!(
        err.contains("server.admin_token_file")
            && err.contains("blockhook keys generate --admin-token"),
        "{err}"
    );

    // A worker answers no authenticated route: it needs no operator token.
    let mut worker = s.clone();
    worker.server.role = blockhook_server::config::Role::Worker;
    Application::build(worker).await.unwrap();

    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "file-admin-token-0123456789\n").unwrap();
    s.server.admin_token_file = token_file.display().to_string();
    let app = start(Backend::Postgres, s.clone()).await;
    let r = app
        .post(
            "/v1/merchants",
            "file-admin-token-0123456789",
            &json!({ "name": "From files" }),
        )
        .await;
    assert_eq!(
        r.status(),
        201,
        "the token read from the file is the operator's"
    );
    app.stop().await;
    assert!(!data_dir.exists(), "a PostgreSQL process made {data_dir:?}");

    s.keys.master_key = K1.into();
    let err = build_error(s).await;
    assert!(err.contains("not both"), "{err}");
}

#[tokio::test]
async fn rotation_reseals_every_secret_while_serving() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let with_k1 = settings_with_key(backend, dir.path(), K1).await;
        let app = start(backend, with_k1.clone()).await;
        let m = app.merchant().await;
        let mut secrets = std::collections::HashMap::new();
        for i in 0..5 {
            let ep = app
                .endpoint(&m, &format!("https://127.0.0.1:9/hook{i}"), json!({}))
                .await;
            secrets.insert(
                ep["id"].as_str().unwrap().to_owned(),
                ep["secret"].as_str().unwrap().to_owned(),
            );
        }
        // A Standard Webhooks endpoint in a rotation's overlap: its previous secret is sealed
        // with the old key too, and must open with the new key alone afterwards.
        let std_ep = app
            .endpoint(
                &m,
                "https://127.0.0.1:9/standard",
                json!({ "signing_mode": "standard" }),
            )
            .await;
        let std_id = std_ep["id"].as_str().unwrap().to_owned();
        let r = app
            .post(
                &format!("/v1/merchants/{m}/endpoints/{std_id}/rotate-secret"),
                ADMIN,
                &json!({ "overlap": "1h" }),
            )
            .await;
        assert_eq!(r.status(), 200);
        let rotated: Value = r.json().await.unwrap();
        let mut previous = std::collections::HashMap::new();
        previous.insert(
            std_id.clone(),
            std_ep["secret"].as_str().unwrap().to_owned(),
        );
        secrets.insert(std_id, rotated["secret"].as_str().unwrap().to_owned());
        app.stop().await;

        // Every process now has the new key and the previous one.
        let mut rotating = with_k1.clone();
        rotating.keys.master_key = K2.into();
        rotating.keys.old_master_keys = vec![K1.into()];
        let app = start(backend, rotating).await;
        let store = app.state.store.clone();
        let keys = app.state.keys.clone();

        // A rotation between reseal's read and its write wins: the write is a compare-and-set.
        let before = store.sealed_secrets(None, 100).await.unwrap();
        assert_eq!(before.len(), 7, "6 current secrets, 1 previous");
        let (raced_id, slot, stale) = before[0].clone();
        assert_eq!(slot, SecretSlot::Current);
        let r = app
            .post(
                &format!("/v1/merchants/{m}/endpoints/{raced_id}/rotate-secret"),
                ADMIN,
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let rotated: Value = r.json().await.unwrap();
        secrets.insert(
            raced_id.to_string(),
            rotated["secret"].as_str().unwrap().to_owned(),
        );
        let clear = keys.open(&raced_id, &stale).unwrap();
        let resealed = keys.seal(&raced_id, &clear).unwrap();
        assert!(
            !store
                .reseal_secret(&raced_id, SecretSlot::Current, &stale, &resealed)
                .await
                .unwrap(),
            "a stale compare-and-set must not overwrite the rotation"
        );

        // Batches of 2 over 6 endpoints, while the app serves.
        let done = keyring::reseal(&*store, &keys, 2).await.unwrap();
        assert_eq!(done.resealed, 6, "{backend:?}: {done:?}");
        assert_eq!(done.current, 1, "the rotated secret was already current");
        assert!(done.check_value);
        let again = keyring::reseal(&*store, &keys, 2).await.unwrap();
        assert_eq!((again.resealed, again.check_value), (0, false));

        // The new key alone opens every secret, unchanged (the rotated one as rotated).
        let k2_only = MasterKey::from_base64(K2).unwrap();
        let after: Vec<(blockhook_core::EndpointId, SecretSlot, SealedSecret)> =
            store.sealed_secrets(None, 100).await.unwrap();
        assert_eq!(after.len(), 7);
        for (id, slot, sealed) in &after {
            let secret = k2_only.open(id, sealed).unwrap();
            let want = match slot {
                SecretSlot::Current => &secrets[id.as_str()],
                SecretSlot::Previous => &previous[id.as_str()],
            };
            assert_eq!(secret.expose(), want, "{id} {slot:?}");
        }
        app.stop().await;

        // The old key alone is now refused; the new key alone starts.
        let err = build_error(with_k1.clone()).await;
        assert!(err.contains("does not open"), "{err}");
        let mut new_only = with_k1;
        new_only.keys.master_key = K2.into();
        Application::build(new_only).await.unwrap();
    }
}
