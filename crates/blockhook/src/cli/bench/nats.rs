//! `bench --source nats`: a "gateway" publishes the events to a fresh JetStream stream, which
//! the blockhook under test reads through its durable consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use tokio::task::JoinSet;

use super::load::{Load, payload};
use super::now_us;

/// The consumer name blockhook is configured with.
pub const CONSUMER: &str = "blockhook";

/// A stream of the bench's own, deleted afterwards.
pub struct GatewayStream {
    /// The NATS server.
    pub url: String,
    /// The stream's name.
    pub stream: String,
    subject: String,
    js: jetstream::Context,
}

impl GatewayStream {
    pub async fn create(url: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let js = jetstream::new(client);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (stream, subject) = (format!("BH_BENCH_{id}"), format!("bh.bench.{id}"));
        js.create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .context("creating the bench stream (is JetStream enabled?)")?;
        Ok(Self {
            url: url.to_owned(),
            stream,
            subject,
            js,
        })
    }

    /// Messages blockhook has not settled yet (not delivered, or delivered and not acknowledged);
    /// all of them until its consumer exists.
    pub async fn left(&self) -> anyhow::Result<u64> {
        let mut stream = self.js.get_stream(&self.stream).await?;
        let total = stream.info().await?.state.messages;
        match stream
            .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER)
            .await
        {
            Ok(mut consumer) => {
                let info = consumer.info().await?;
                Ok(info.num_pending + info.num_ack_pending as u64)
            }
            Err(_) => Ok(total),
        }
    }

    pub async fn drop_it(self) {
        if let Err(e) = self.js.delete_stream(&self.stream).await {
            eprintln!("could not delete stream {}: {e}", self.stream);
        }
    }
}

/// Publishes `events` messages (event `seq` for merchant `seq % merchants`) from `concurrency`
/// publishers, each waiting for JetStream's acknowledgement; returns the seconds until the last.
pub async fn fill(
    gw: &GatewayStream,
    merchants: Arc<Vec<String>>,
    events: u64,
    concurrency: usize,
    load: &Load,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (js, subject, next, merchants, load) = (
            gw.js.clone(),
            gw.subject.clone(),
            next.clone(),
            merchants.clone(),
            load.clone(),
        );
        tasks.spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= events {
                    return anyhow::Ok(());
                }
                let merchant = &merchants[usize::try_from(seq).unwrap_or(0) % merchants.len()];
                let body = format!(
                    r#"{{"merchant_id":"{merchant}","event_type":"Payment","payload":{}}}"#,
                    payload(seq, now_us())
                );
                let mut wait = Duration::from_millis(50);
                loop {
                    let sent = async {
                        js.publish(subject.clone(), body.clone().into())
                            .await?
                            .await
                    };
                    match sent.await {
                        Ok(_) => break,
                        Err(e) if wait < Duration::from_secs(2) => {
                            eprintln!("publish failed: {e}; retrying");
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                        Err(e) => {
                            load.errors.fetch_add(1, Ordering::Relaxed);
                            return Err(anyhow::anyhow!("publishing: {e}"));
                        }
                    }
                }
                load.acked.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            result = Err(e);
        }
    }
    result.map(|()| started.elapsed().as_secs_f64())
}
