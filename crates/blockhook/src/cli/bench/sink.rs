//! The loopback receiver the bench delivers to: plain HTTP/1.1 and HTTP/2 (prior knowledge) on
//! 127.0.0.1, `200` to every request, and for each one the arrival time, the sequence id and the
//! send timestamp carried in the JSON body.
//!
//! Each expected delivery has one slot (`seq * fanout + k`, `k` being the last path segment), so
//! duplicates and losses are counted exactly, without keeping the bodies.
//!
//! Unhealthy endpoints (`--failing-pct`, `--flapping-pct`) are served under other paths:
//! `/fail/...` always answers `500`; `/flap/...` alternates `500` and `200` per path. Neither
//! is recorded in the slots or the latencies, so the figures cover healthy endpoints only.
//!
//! For `--drain`, the receiver can be **down**: while [`Tally::down`] is set, healthy paths answer
//! `503` and nothing is recorded (the attempts are counted in [`Tally::refused`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::now_us;

/// The fields of a bench body the receiver reads.
#[derive(Debug, Deserialize)]
struct Stamp {
    seq: u64,
    sent_us: u64,
}

/// What arrived so far.
#[derive(Debug)]
pub struct Tally {
    fanout: u64,
    slots: Vec<AtomicU32>,
    /// Distinct expected deliveries that arrived.
    pub unique: AtomicU64,
    /// Arrivals of a delivery that had already arrived.
    pub duplicates: AtomicU64,
    /// Requests whose body or path named no expected delivery.
    pub unexpected: AtomicU64,
    /// Unix microseconds of the latest arrival.
    pub last_us: AtomicU64,
    /// Healthy deliveries to wait for, when some endpoints are unhealthy (0: all slots).
    pub healthy_expected: AtomicU64,
    /// Requests to always-failing endpoints (answered `500`).
    pub failing_hits: AtomicU64,
    /// Requests to flapping endpoints answered `500` and `200`.
    pub flapping_500: AtomicU64,
    /// See `flapping_500`.
    pub flapping_200: AtomicU64,
    /// While set, healthy endpoints answer `503` (an outage, for `--drain`).
    pub down: AtomicBool,
    /// Requests answered `503` while down.
    pub refused: AtomicU64,
    flap_state: Mutex<HashMap<String, u64>>,
    latencies_us: Mutex<Vec<u64>>,
}

impl Tally {
    fn new(expected: u64, fanout: u64) -> Self {
        let len = usize::try_from(expected).unwrap_or(0);
        Self {
            fanout: fanout.max(1),
            slots: (0..len).map(|_| AtomicU32::new(0)).collect(),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            healthy_expected: AtomicU64::new(0),
            failing_hits: AtomicU64::new(0),
            flapping_500: AtomicU64::new(0),
            flapping_200: AtomicU64::new(0),
            down: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            flap_state: Mutex::new(HashMap::new()),
            latencies_us: Mutex::new(Vec::with_capacity(len)),
        }
    }

    /// Expected deliveries.
    pub fn expected(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Healthy deliveries the run waits for.
    pub fn target(&self) -> u64 {
        match self.healthy_expected.load(Ordering::Relaxed) {
            0 => self.expected(),
            n => n,
        }
    }

    /// The status an unhealthy endpoint answers, or `None` for a healthy one.
    fn unhealthy(&self, path: &str) -> Option<u16> {
        if self.down.load(Ordering::Relaxed) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Some(503);
        }
        if path.starts_with("/fail/") {
            self.failing_hits.fetch_add(1, Ordering::Relaxed);
            return Some(500);
        }
        if path.starts_with("/flap/") {
            let n = {
                let mut state = self.flap_state.lock().unwrap_or_else(|p| p.into_inner());
                let n = state.entry(path.to_owned()).or_insert(0);
                *n += 1;
                *n
            };
            if n % 2 == 1 {
                self.flapping_500.fetch_add(1, Ordering::Relaxed);
                return Some(500);
            }
            self.flapping_200.fetch_add(1, Ordering::Relaxed);
            return Some(200);
        }
        None
    }

    fn record(&self, path: &str, body: &[u8], at_us: u64) {
        let k: u64 = path
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let Ok(stamp) = serde_json::from_slice::<Stamp>(body) else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let slot = usize::try_from(stamp.seq.saturating_mul(self.fanout).saturating_add(k))
            .ok()
            .and_then(|i| self.slots.get(i));
        let Some(slot) = slot.filter(|_| k < self.fanout) else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if slot.fetch_add(1, Ordering::Relaxed) == 0 {
            self.unique.fetch_add(1, Ordering::Relaxed);
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        self.last_us.fetch_max(at_us, Ordering::Relaxed);
        let lat = at_us.saturating_sub(stamp.sent_us);
        self.latencies_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lat);
    }

    /// The latencies recorded so far, sorted (microseconds).
    pub fn sorted_latencies(&self) -> Vec<u64> {
        let mut v = self
            .latencies_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_unstable();
        v
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub tally: Arc<Tally>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Binds 127.0.0.1:0 and serves until dropped, expecting `expected` deliveries.
    pub async fn start(expected: u64, fanout: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tally = Arc::new(Tally::new(expected, fanout));
        let t = tally.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let t = t.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let t = t.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            match t.unhealthy(&path) {
                                Some(code) => {
                                    *resp.status_mut() = hyper::StatusCode::from_u16(code)
                                        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                                }
                                None => t.record(&path, &body, now_us()),
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Ok(Self { addr, tally, task })
    }

    /// The URL of the `k`-th endpoint of a fan-out group.
    pub fn url(&self, k: u64) -> String {
        format!("http://{}/hook/{k}", self.addr)
    }

    /// The URL of endpoint `k` of group `g`: healthy, always failing or flapping.
    pub fn url_for(&self, g: u64, k: u64, mode: Mode) -> String {
        match mode {
            Mode::Healthy => self.url(k),
            Mode::Failing => format!("http://{}/fail/{g}/{k}", self.addr),
            Mode::Flapping => format!("http://{}/flap/{g}/{k}", self.addr),
        }
    }
}

/// How an endpoint of the bench answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `200` to everything, recorded.
    Healthy,
    /// `500` to everything.
    Failing,
    /// `500`, `200`, `500`, ... (per endpoint).
    Flapping,
}

impl Mode {
    /// The mode of endpoint number `i` (of all endpoints) for the given percentages: a fixed
    /// permutation of `i % 100`, so each percentage is exact over every 100 endpoints and the
    /// unhealthy ones are spread over the merchants.
    pub fn of(i: u64, failing_pct: u64, flapping_pct: u64) -> Self {
        let r = (i * 37) % 100;
        if r < failing_pct {
            Self::Failing
        } else if r < failing_pct + flapping_pct {
            Self::Flapping
        } else {
            Self::Healthy
        }
    }
}
