//! Operating the embedded store with the real binary: a backup taken during load restores into a
//! new data directory that starts and holds every event acknowledged before the backup began;
//! `restore` refuses a directory a running server holds and one that already has a database; a
//! clean stop leaves `blockhook.db` complete on its own (WAL checkpointed).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{Api, Backend, Conf, Server, free_port};

fn blockhook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blockhook"))
        .args(args)
        .env_remove("BLOCKHOOK_CONFIG")
        .output()
        .unwrap()
}

/// `blockhook backup --to FILE --data-dir D` or `blockhook restore --from FILE --data-dir D`.
fn file_and_data_dir(command: &str, file_flag: &str, file: &Path, data_dir: &Path) -> Output {
    blockhook(&[
        command,
        file_flag,
        file.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
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
    let out = file_and_data_dir("backup", "--to", &backup, &data);
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
    let out = file_and_data_dir("restore", "--from", &backup, &data);
    assert!(!out.status.success());
    assert!(text(&out).contains("running blockhook"), "{}", text(&out));

    // Into a new directory, with the master key put back beside it, as README says.
    let restored = tempfile::tempdir().unwrap();
    let new_data = restored.path().join("data");
    let out = file_and_data_dir("restore", "--from", &backup, &new_data);
    assert!(out.status.success(), "restore: {}", text(&out));
    let out = file_and_data_dir("restore", "--from", &backup, &new_data);
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

/// README's scale-out block, run as written on one host (PostgreSQL only): the API and the
/// worker both start, the operator token from the generated file works, and no process creates
/// `./blockhook-data`. Also: `migrate --help` lists only its own flags, and `migrate` on a
/// database that does not exist says how to create it.
#[tokio::test]
async fn readme_scale_out_commands_work_on_one_host() {
    let help = text(&blockhook(&["migrate", "--help"]));
    for flag in ["--database-url", "--config", "--data-dir"] {
        assert!(help.contains(flag), "{help}");
    }
    for flag in [
        "--listen",
        "--role",
        "--allow-http",
        "--allow-net",
        "--log-format",
    ] {
        assert!(!help.contains(flag), "migrate --help lists {flag}: {help}");
    }
    let Some(url) = common::backends().await.into_iter().find_map(|b| match b {
        Backend::Postgres(url) => Some(url),
        Backend::Sqlite => None,
    }) else {
        return;
    };
    let (server, _) = url.split_once('?').unwrap();
    let (server, _) = server.rsplit_once('/').unwrap();
    let out = blockhook(&[
        "migrate",
        "--database-url",
        &format!("{server}/bh_missing_{}", uuid::Uuid::new_v4().simple()),
    ]);
    assert!(
        !out.status.success() && text(&out).contains("createdb"),
        "{}",
        text(&out)
    );

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let after = readme.split("Scaling out on PostgreSQL").nth(1).unwrap();
    let block = after
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    assert!(block.contains("--role worker") && block.contains("--role api"));
    let (api_port, worker_port) = (free_port(), free_port());
    let script = block
        .replace("postgres://user@host/db", "\"$DB\"")
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{worker_port}"));
    let cwd = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_blockhook")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let log = std::fs::File::create(cwd.path().join("script.log")).unwrap();
    use std::os::unix::process::CommandExt as _;
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e\n{script}\nwait"))
        .current_dir(cwd.path())
        .env("PATH", path)
        .env("DB", &url)
        .env("BLOCKHOOK_SERVER__LISTEN", format!("127.0.0.1:{api_port}"))
        .env_remove("BLOCKHOOK_CONFIG")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for port in [api_port, worker_port] {
        loop {
            let ok = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                break;
            }
            let logs = std::fs::read_to_string(cwd.path().join("script.log")).unwrap();
            assert!(
                sh.try_wait().unwrap().is_none(),
                "the block stopped: {logs}"
            );
            assert!(Instant::now() < deadline, "port {port} not ready: {logs}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let token = std::fs::read_to_string(cwd.path().join("admin-token")).unwrap();
    let r = http
        .post(format!("http://127.0.0.1:{api_port}/v1/merchants"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({ "name": "README" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        !cwd.path().join("blockhook-data").exists(),
        "a PostgreSQL process created ./blockhook-data"
    );
    // Stop the block's processes (its process group) and reap the shell.
    let pgid = format!("-{}", sh.id());
    let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
    let _ = sh.wait();
}

/// `blockhook keys reseal` against a running server (embedded store): the previous key comes
/// from `BLOCKHOOK_KEYS__OLD_MASTER_KEYS`, every secret is re-sealed, and the server then starts
/// with the new key alone.
#[tokio::test]
async fn keys_reseal_runs_beside_a_server_and_the_new_key_alone_then_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let mut server = Server::start(tmp.path(), port, Backend::Sqlite, &Conf::default());
    server.ready().await;
    let api = Api::new(server.base());
    let merchant = api.merchant("Rotation").await;
    for i in 0..3 {
        api.endpoint(&merchant, &format!("http://127.0.0.1:9/{i}"))
            .await;
    }
    let old = std::fs::read_to_string(data.join("master.key")).unwrap();
    let new = text(&blockhook(&["keys", "generate"])).trim().to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_blockhook"))
        .args([
            "keys",
            "reseal",
            "--data-dir",
            data.to_str().unwrap(),
            "--batch",
            "2",
        ])
        .env_remove("BLOCKHOOK_CONFIG")
        .env("BLOCKHOOK_KEYS__MASTER_KEY", &new)
        .env(
            "BLOCKHOOK_KEYS__OLD_MASTER_KEYS",
            format!("[\"{}\"]", old.trim()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "reseal: {}", text(&out));
    assert!(text(&out).contains("re-sealed 3 secrets"), "{}", text(&out));
    terminate(&mut server).await;

    // The old key (still in master.key) no longer opens the database.
    let mut stale = Server::start(tmp.path(), free_port(), Backend::Sqlite, &Conf::default());
    let deadline = Instant::now() + Duration::from_secs(20);
    while stale.exited().is_none() {
        assert!(
            Instant::now() < deadline,
            "a server with the old key started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(String::from_utf8_lossy(&stale.logs()).contains("does not open"));
    let mut fresh = Server::start_with(
        tmp.path(),
        "server",
        free_port(),
        Backend::Sqlite,
        &Conf::default(),
        &[],
        &[("BLOCKHOOK_KEYS__MASTER_KEY", new.as_str())],
    );
    fresh.ready().await;
}
