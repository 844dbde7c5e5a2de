//! The NATS JetStream source, end to end with the real binary: 10,000 messages published to a
//! stream while `blockhook serve` reads it; blockhook is SIGKILLed mid-way and started again;
//! at the end every message is exactly one event (by its sequence in the payload and by its
//! idempotency key): lost = 0, duplicates = 0; a malformed message is in the dead letters.
//!
//! Needs the NATS server named by `BLOCKHOOK_TEST_NATS_URL` (with JetStream); prints a SKIP line
//! and returns without it.

use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::common::{Api, Backend, Conf, Server, free_port, ledger};

const MESSAGES: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_stream_loses_and_duplicates_nothing() {
    let Ok(url) = std::env::var("BLOCKHOOK_TEST_NATS_URL") else {
        eprintln!(
            "SKIP a_sigkill_mid_stream_loses_and_duplicates_nothing: BLOCKHOOK_TEST_NATS_URL is not set"
        );
        return;
    };
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (stream, subject) = (format!("BH_{id}"), format!("bh.{id}.events"));
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();

    let conf = Conf {
        extra: format!(
            "[[sources.nats]]\nurl = \"{url}\"\nstream = \"{stream}\"\nconsumer = \"blockhook\"\n\
             batch = 200\n"
        ),
        ..Conf::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), free_port(), Backend::Sqlite, &conf);
    server.ready().await;
    let merchant = Api::new(server.base()).merchant("nats").await;

    // The publisher: every message acknowledged by JetStream (stored in the stream) in turn.
    let publisher = {
        let (js, subject, merchant) = (js.clone(), subject.clone(), merchant.clone());
        tokio::spawn(async move {
            for seq in 0..MESSAGES {
                let body = format!(
                    r#"{{"merchant_id":"{merchant}","event_type":"Payment","payload":{{"seq":{seq}}}}}"#
                );
                js.publish(subject.clone(), body.into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                if seq == MESSAGES / 2 {
                    js.publish(subject.clone(), "{\"seq\":".into())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                }
            }
        })
    };
    let db = server.db().await;
    // SIGKILL once about a third is stored, then start again.
    let deadline = Instant::now() + Duration::from_secs(300);
    while db.count("SELECT COUNT(*) FROM events").await < 3_000 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let killed_at = db.count("SELECT COUNT(*) FROM events").await;
    server.restart().await;
    publisher.await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(300);
    while db.count("SELECT COUNT(*) FROM events").await < MESSAGES as i64
        || db.count("SELECT COUNT(*) FROM dead_letters").await < 1
    {
        assert!(
            Instant::now() < deadline,
            "not all stored: {} events",
            db.count("SELECT COUNT(*) FROM events").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A moment for a late duplicate to show.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let per_seq = db
        .groups("SELECT CAST(json_extract(CAST(payload AS TEXT), '$.seq') AS TEXT), COUNT(*) FROM events GROUP BY 1")
        .await;
    let per_key = db
        .groups("SELECT idempotency_key, COUNT(*) FROM events GROUP BY 1")
        .await;
    let events = db.count("SELECT COUNT(*) FROM events").await;
    let duplicates: i64 = per_seq.iter().map(|(_, n)| n - 1).sum::<i64>()
        + per_key.iter().map(|(_, n)| n - 1).sum::<i64>();
    let lost = MESSAGES as i64 - per_seq.len() as i64;
    let dead = db.count("SELECT COUNT(*) FROM dead_letters").await;
    ledger(&format!(
        "nats: published={MESSAGES} events={events} lost={lost} duplicates={duplicates} \
         dead_lettered={dead} killed_at={killed_at}"
    ));
    assert_eq!(lost, 0, "lost messages");
    assert_eq!(duplicates, 0, "duplicated messages");
    assert_eq!(events, MESSAGES as i64);
    assert_eq!(dead, 1, "the malformed message");
    assert!(
        per_key
            .iter()
            .all(|(k, _)| k.starts_with(&format!("nats:{stream}:")))
    );
    drop(server);
    js.delete_stream(&stream).await.unwrap();
}
