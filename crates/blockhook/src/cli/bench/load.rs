//! The load side of the bench: the bare-limit client, the setup of merchants and endpoints, and
//! the publisher that drives the real ingest API (closed loop at a concurrency, or open loop at
//! an offered rate).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::now_us;
use super::sink::{Mode, Sink};

/// A realistic payment payload carrying the bench's sequence id and send time.
pub fn payload(seq: u64, sent_us: u64) -> String {
    format!(
        r#"{{"seq":{seq},"sent_us":{sent_us},"custNo":"CustNo_00240101","orderNo":"OrderNo_{seq:012}","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","cashierId":86100021}}"#
    )
}

/// POSTs `total` bodies straight to the sink, `concurrency` at a time.
pub async fn bare(sink: &Sink, total: u64, concurrency: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = Arc::new(sink.url(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    return anyhow::Ok(());
                }
                post_bare(&client, &url, seq).await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// POSTs `total` bodies straight to the sink at `rate` per second, as the publisher paces a
/// run with `--rate`: what one loopback request costs its two sides at that rate, with nothing
/// in between.
pub async fn bare_at(sink: &Sink, total: u64, rate: f64) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = Arc::new(sink.url(0));
    let gap = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for seq in 0..total {
        tokio::time::sleep_until((started + gap.mul_f64(seq as f64)).into()).await;
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move { post_bare(&client, &url, seq).await });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

async fn post_bare(client: &reqwest::Client, url: &str, seq: u64) -> anyhow::Result<()> {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(payload(seq, now_us()))
        .send()
        .await?
        .bytes()
        .await?;
    Ok(())
}

/// The merchants and endpoints a run created.
#[derive(Debug, Default)]
pub struct Setup {
    /// Merchant ids, in order.
    pub merchants: Vec<String>,
    /// Healthy endpoints of each merchant.
    pub healthy: Vec<u64>,
    /// Every endpoint, as (merchant id, endpoint id).
    pub endpoints: Vec<(String, String)>,
}

/// Creates `groups` merchants with `fanout` endpoints each (endpoint `k` at `/hook/k`, or an
/// unhealthy path per [`Mode::of`]). With `ordered`, every endpoint orders its deliveries per key.
pub async fn setup(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    sink: &Sink,
    (groups, fanout): (u64, u64),
    unhealthy_pct: (u64, u64),
    ordered: bool,
) -> anyhow::Result<Setup> {
    let ordering = if ordered {
        json!({ "mode": "per_key" })
    } else {
        json!({ "mode": "none" })
    };
    let mut out = Setup::default();
    for i in 0..groups {
        let r = client
            .post(format!("{base}/v1/merchants"))
            .bearer_auth(token)
            .json(&json!({ "name": format!("bench merchant {i}") }))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if status != 201 {
            bail!("creating a merchant: {status} {v}");
        }
        let id = v["id"].as_str().context("merchant id")?.to_owned();
        let mut ok = 0;
        for k in 0..fanout {
            let mode = Mode::of(i * fanout + k, unhealthy_pct.0, unhealthy_pct.1);
            if mode == Mode::Healthy {
                ok += 1;
            }
            let r = client
                .post(format!("{base}/v1/merchants/{id}/endpoints"))
                .bearer_auth(token)
                .json(&json!({ "url": sink.url_for(i, k, mode), "ordering": ordering }))
                .send()
                .await?;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or_default();
            if status != 201 {
                bail!("creating an endpoint: {status} {v}");
            }
            let endpoint = v["id"].as_str().context("endpoint id")?.to_owned();
            out.endpoints.push((id.clone(), endpoint));
        }
        out.merchants.push(id);
        out.healthy.push(ok);
    }
    Ok(out)
}

/// What to publish and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `http://127.0.0.1:port` of blockhook.
    pub base: String,
    /// Operator token.
    pub token: String,
    /// Event `seq` goes to `merchants[seq % len]`.
    pub merchants: Arc<Vec<String>>,
    /// Events in all.
    pub events: u64,
    /// Events per request (0: single-event route).
    pub batch: usize,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Offered events/s, if fixed.
    pub rate: Option<f64>,
    /// Event `seq` carries the ordering key `k<seq % n>` (with ordered endpoints).
    pub ordering_keys: Option<u64>,
    /// Event `seq` carries the idempotency key `e<seq>`, as a gateway that retries its
    /// publishes safely sends one.
    pub idempotency_keys: bool,
}

impl Plan {
    fn per_request(&self) -> u64 {
        self.batch.max(1) as u64
    }

    fn requests(&self) -> u64 {
        self.events.div_ceil(self.per_request())
    }

    /// The URL and body of request `unit`, stamped now.
    fn request(&self, unit: u64) -> (String, String) {
        let first = unit * self.per_request();
        let last = (first + self.per_request()).min(self.events);
        let one = |seq: u64| {
            let merchant =
                &self.merchants[usize::try_from(seq).unwrap_or(0) % self.merchants.len()];
            let key = self.ordering_keys.map_or_else(String::new, |n| {
                format!(r#","ordering_key":"k{}""#, seq % n)
            });
            let idempotency = if self.idempotency_keys {
                format!(r#","idempotency_key":"e{seq}""#)
            } else {
                String::new()
            };
            format!(
                r#"{{"merchant_id":"{merchant}","event_type":"Payment","payload":{}{key}{idempotency}}}"#,
                payload(seq, now_us())
            )
        };
        if self.batch == 0 {
            return (format!("{}/v1/events", self.base), one(first));
        }
        let mut body = String::from(r#"{"events":["#);
        for seq in first..last {
            if seq > first {
                body.push(',');
            }
            let _ = write!(body, "{}", one(seq));
        }
        body.push_str("]}");
        (format!("{}/v1/events/batch", self.base), body)
    }

    fn events_in(&self, unit: u64) -> u64 {
        let first = unit * self.per_request();
        (first + self.per_request()).min(self.events) - first
    }
}

/// Counters the publisher updates.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// Events acknowledged with `202`.
    pub acked: Arc<AtomicU64>,
    /// Requests that failed for good (their events count as lost).
    pub errors: Arc<AtomicU64>,
}

/// Sends one request, retrying overload answers and transport errors a few times.
async fn send(client: &reqwest::Client, plan: &Plan, unit: u64, load: &Load) {
    for attempt in 0..5u32 {
        let (url, body) = plan.request(unit);
        let sent = client
            .post(url)
            .bearer_auth(&plan.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 202 => {
                let _ = r.bytes().await;
                load.acked
                    .fetch_add(plan.events_in(unit), Ordering::Relaxed);
                return;
            }
            Ok(r) if r.status().is_client_error() && r.status() != 429 => {
                let status = r.status();
                eprintln!(
                    "ingest refused: {status} {}",
                    r.text().await.unwrap_or_default()
                );
                break;
            }
            Ok(r) => {
                let status = r.status();
                eprintln!("ingest answered {status}; retrying");
            }
            Err(e) => eprintln!("ingest request failed: {e}; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
    }
    load.errors.fetch_add(1, Ordering::Relaxed);
}

/// Publishes the whole plan; returns the seconds it took until the last acknowledgement.
pub async fn publish(client: reqwest::Client, plan: Plan, load: Load) -> anyhow::Result<f64> {
    let started = Instant::now();
    let plan = Arc::new(plan);
    let requests = plan.requests();
    let mut tasks = JoinSet::new();
    match plan.rate {
        None => {
            let next = Arc::new(AtomicU64::new(0));
            for _ in 0..plan.concurrency {
                let (client, plan, load, next) =
                    (client.clone(), plan.clone(), load.clone(), next.clone());
                tasks.spawn(async move {
                    loop {
                        let unit = next.fetch_add(1, Ordering::Relaxed);
                        if unit >= requests {
                            return;
                        }
                        send(&client, &plan, unit, &load).await;
                    }
                });
            }
        }
        Some(rate) => {
            let gap = Duration::from_secs_f64(plan.per_request() as f64 / rate);
            let permits = Arc::new(Semaphore::new(plan.concurrency));
            for unit in 0..requests {
                let due = started + gap.mul_f64(unit as f64);
                tokio::time::sleep_until(due.into()).await;
                let permit = permits.clone().acquire_owned().await?;
                let (client, plan, load) = (client.clone(), plan.clone(), load.clone());
                tasks.spawn(async move {
                    send(&client, &plan, unit, &load).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(started.elapsed().as_secs_f64())
}

/// Re-queues every endpoint's failed deliveries created since `since_ms` (or, with `dry_run`,
/// counts them), one endpoint after the other as a merchant would after an outage; returns how
/// many, in all.
pub async fn recover(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    endpoints: &[(String, String)],
    (since_ms, dry_run): (u64, bool),
) -> anyhow::Result<u64> {
    let mut total = 0;
    for (merchant, endpoint) in endpoints {
        let r = client
            .post(format!(
                "{base}/v1/merchants/{merchant}/endpoints/{endpoint}/recover"
            ))
            .bearer_auth(token)
            .json(&json!({ "since": since_ms, "dry_run": dry_run }))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if status != 200 {
            bail!("recovering an endpoint: {status} {v}");
        }
        total += v["requeued"].as_u64().context("requeued")?;
    }
    Ok(total)
}
