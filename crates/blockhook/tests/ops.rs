//! Operating the embedded store with the real binary: a backup taken during load restores into a
//! new data directory that starts and holds every event acknowledged before the backup began;
//! `restore` refuses a directory a running server holds and one that already has a database; a
//! clean stop leaves `blockhook.db` complete on its own (WAL checkpointed).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, Backend, Conf, Server, free_port};

fn blockhook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blockhook"))
        .args(args)
        .env_remove("BLOCKHOOK_CONFIG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Event ids in the SQLite database at `db` (opened read-write: it may be a bare copy).
async fn event_ids(db: &Path) -> HashSet<String> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    ids.into_iter().collect()
}

/// SIGTERM, then waits for the process to exit by itself.
async fn terminate(server: &mut Server) {
    let pid = server.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.exited().is_none() {
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backup_during_load_restores_every_event_acknowledged_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(tmp.path(), free_port(), Backend::Sqlite, &Conf::default());
    server.ready().await;
    let api = Arc::new(Api::new(server.base()));
    let merchant = api.merchant("Backup").await;

    // Load: publishers acknowledge events without pause while the backup is taken.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..4u64 {
        let (api, merchant, acked, stop) =
            (api.clone(), merchant.clone(), acked.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let mut seq = p * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                if let Some(id) = api.publish(&merchant, seq).await {
                    acked.lock().unwrap().push((id, Instant::now()));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let began = Instant::now();
    let backup = tmp.path().join("backup.db");
    let out = blockhook(&[
        "backup",
        "--to",
        backup.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "backup: {}", text(&out));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id)
        .collect();
    assert!(before.len() >= 20, "too little load: {}", before.len());
    assert!(
        acked.len() > before.len(),
        "the load went on during the backup"
    );

    // Not over the running server's store, not into a directory holding a database.
    let out = blockhook(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("running blockhook"), "{}", text(&out));

    // Into a new directory, with the master key put back beside it, as README says.
    let restored = tempfile::tempdir().unwrap();
    let new_data = restored.path().join("data");
    let out = blockhook(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        new_data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "restore: {}", text(&out));
    let out = blockhook(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        new_data.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && text(&out).contains("already holds a database"),
        "{}",
        text(&out)
    );
    std::fs::copy(data.join("master.key"), new_data.join("master.key")).unwrap();
    let mut second = Server::start(
        restored.path(),
        free_port(),
        Backend::Sqlite,
        &Conf::default(),
    );
    second.ready().await;
    let r = reqwest::Client::new()
        .get(format!("{}/v1/merchants/{merchant}", second.base()))
        .bearer_auth(common::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the restored server knows the merchant");
    terminate(&mut second).await;
    let have = event_ids(&new_data.join("blockhook.db")).await;
    let missing: Vec<_> = before.iter().filter(|id| !have.contains(**id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events acknowledged before the backup are missing",
        missing.len(),
        before.len()
    );

    // A clean stop leaves blockhook.db complete on its own: a copy of that one file has it all.
    terminate(&mut server).await;
    let wal = data.join("blockhook.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL still holds data after a clean stop"
    );
    let alone = tempfile::tempdir().unwrap();
    std::fs::copy(data.join("blockhook.db"), alone.path().join("copy.db")).unwrap();
    let copied = event_ids(&alone.path().join("copy.db")).await;
    let lost = acked.iter().filter(|(id, _)| !copied.contains(id)).count();
    assert_eq!(
        lost, 0,
        "acknowledged events missing from a copy of blockhook.db alone"
    );
}
