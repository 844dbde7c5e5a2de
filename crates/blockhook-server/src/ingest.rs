//! Group commit for ingest: concurrent `POST /v1/events` requests share one store transaction.
//!
//! Each request hands its events to one task over a channel and waits for its own answer. The
//! task takes everything queued (up to a cap) and stores it with a single `Store::ingest` call,
//! so under load one commit (one fsync on SQLite) acknowledges many requests, and with no load a
//! request is committed alone, at once. Nothing is answered before its transaction committed.
//!
//! Each event's search keys (the configured `[search] fields` its payload holds) are taken on
//! the submitting request's task, before the queue, so the committing task only writes them.
//!
//! A combined batch that fails for a client reason (unknown merchant, suspended merchant) is
//! retried request by request, so one bad request never fails its neighbours.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use blockhook_core::{Error, Ingested, NewEvent, SearchFields, StoreRef};

use crate::dispatch::Handoff;
use crate::metrics::Metrics;

/// Largest number of events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 2_000;

type Reply = oneshot::Sender<Result<Vec<Ingested>, Error>>;

struct Job {
    events: Vec<NewEvent>,
    reply: Reply,
}

/// The handle handlers submit events through.
#[derive(Clone, Debug)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
    search: Arc<SearchFields>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} events)", self.events.len())
    }
}

impl Ingestor {
    /// Starts the committing task. Deliveries the store leases at ingest go to the dispatcher
    /// through `handoff`; `wake` is notified after each commit that stored deliveries it did
    /// not hand off; `search` are the payload fields events are indexed under.
    pub fn start(
        store: StoreRef,
        (wake, handoff): (Arc<Notify>, Arc<Handoff>),
        metrics: Arc<Metrics>,
        search: SearchFields,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4_096);
        let out = Out {
            wake,
            handoff,
            metrics,
        };
        tokio::spawn(run(store, rx, out));
        Self {
            tx,
            search: Arc::new(search),
        }
    }

    /// Stores `events` in one transaction (possibly shared with other requests), indexed under
    /// their search keys, and returns what was stored, in order.
    pub async fn submit(&self, mut events: Vec<NewEvent>) -> Result<Vec<Ingested>, Error> {
        for ev in &mut events {
            ev.search_keys = self.search.keys_of(&ev.payload);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { events, reply })
            .await
            .map_err(|_| Error::Unavailable("ingest is shutting down".to_owned()))?;
        answer
            .await
            .map_err(|_| Error::Internal("ingest task stopped".to_owned()))?
    }
}

/// Where the committing task's results go.
struct Out {
    wake: Arc<Notify>,
    handoff: Arc<Handoff>,
    metrics: Arc<Metrics>,
}

async fn run(store: StoreRef, mut rx: mpsc::Receiver<Job>, out: Out) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut total = jobs[0].events.len();
        while total < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if commit(&store, jobs, &out).await {
            out.wake.notify_one();
        }
    }
}

/// Stores the jobs' events, in one transaction if they can share it, and answers each job.
/// Whether the dispatcher must look for work: deliveries were stored that it was not handed
/// (or something failed, and a look costs little).
async fn commit(store: &StoreRef, jobs: Vec<Job>, out: &Out) -> bool {
    let mut left = false;
    if jobs.len() == 1 {
        for job in jobs {
            let result = store_events(store, &job.events, out, &mut left).await;
            let _ = job.reply.send(result);
        }
        return left;
    }
    let all: Vec<NewEvent> = jobs.iter().flat_map(|j| j.events.iter().cloned()).collect();
    match store_events(store, &all, out, &mut left).await {
        Ok(results) => {
            let mut rest = results.into_iter();
            for job in jobs {
                let mine: Vec<Ingested> = rest.by_ref().take(job.events.len()).collect();
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(
            Error::NotFound(_)
            | Error::Conflict(_)
            | Error::Invalid { .. }
            | Error::IdempotencyConflict { .. },
        ) => {
            for job in jobs {
                let result = store_events(store, &job.events, out, &mut left).await;
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(clone_error(&e)));
            }
        }
    }
    left
}

/// One store call: with free delivery slots, the store leases deliveries in the ingest's
/// transaction and they go straight to the dispatcher. Sets `left` when deliveries were stored
/// that were not handed off.
async fn store_events(
    store: &StoreRef,
    events: &[NewEvent],
    out: &Out,
    left: &mut bool,
) -> Result<Vec<Ingested>, Error> {
    let (result, handed) = match out.handoff.reserve() {
        Some(reserved) => match store.ingest_and_claim(events, reserved.request()).await {
            Ok((done, claims)) => (Ok(done), reserved.hand(claims)),
            Err(e) => (Err(e), 0),
        },
        None => (store.ingest(events).await, 0),
    };
    count(&result, &out.metrics);
    let stored: u64 = match &result {
        Ok(done) => done.iter().map(|i| u64::from(i.deliveries)).sum(),
        Err(_) => 1,
    };
    *left |= stored > handed as u64;
    result
}

fn count(result: &Result<Vec<Ingested>, Error>, metrics: &Metrics) {
    if let Ok(done) = result {
        let fresh = done.iter().filter(|i| !i.duplicate).count();
        metrics
            .events_ingested
            .inc_by(u64::try_from(fresh).unwrap_or(0));
    }
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}
