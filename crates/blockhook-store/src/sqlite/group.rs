//! Group commit: concurrent `ingest` calls share one transaction, and so do concurrent `finish`
//! calls.
//!
//! Why: with `synchronous=FULL` every commit waits for an fsync (milliseconds on real disks), and
//! the API ingests one request at a time while each delivery task records its own attempt. One
//! commit per call would cap the store at a few hundred events a second whatever the CPU. Here
//! each kind of write has a queue drained by one background task: it takes every request
//! waiting, runs them in one transaction, and answers each caller with its own result. Under
//! light load a group is one request (no added latency beyond a channel hop); under heavy load
//! groups grow and the fsync is shared.
//!
//! The tasks run apart from the callers, so a caller that gives up (a cancelled request) cannot
//! leave a half-finished transaction behind, and every request taken into a group is answered.
//! They stop when the store is dropped (the queues close).

use std::sync::Arc;

use blockhook_core::{Completion, Error, Ingested, NewEvent, Timestamp};
use tokio::sync::{mpsc, oneshot};

use super::db::Db;
use super::{dispatch, events};

/// Requests waiting per queue before callers wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// A group stops growing at this many events or completions...
const MAX_GROUP_ROWS: usize = 4096;
/// ...or this many requests.
const MAX_GROUP_REQUESTS: usize = 512;

struct IngestJob {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<Ingested>, Error>>,
}

struct FinishJob {
    done: Vec<Completion>,
    now: Timestamp,
    reply: oneshot::Sender<Result<u32, Error>>,
}

/// The two queues and their writer tasks.
pub(super) struct Queues {
    ingest: mpsc::Sender<IngestJob>,
    finish: mpsc::Sender<FinishJob>,
}

fn stopped() -> Error {
    Error::Unavailable("the SQLite writer task stopped".to_owned())
}

impl Queues {
    /// Starts the writer tasks (on the current tokio runtime).
    pub(super) fn start(db: &Arc<Db>) -> Self {
        let (ingest, ingest_rx) = mpsc::channel(QUEUE_DEPTH);
        let (finish, finish_rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(ingest_loop(Arc::clone(db), ingest_rx));
        tokio::spawn(finish_loop(Arc::clone(db), finish_rx));
        Self { ingest, finish }
    }

    /// `Store::ingest`, through the ingest queue.
    pub(super) async fn ingest(&self, events: &[NewEvent]) -> Result<Vec<Ingested>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let job = IngestJob {
            events: events.to_vec(),
            reply,
        };
        self.ingest.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// `Store::finish`, through the finish queue.
    pub(super) async fn finish(&self, done: &[Completion], now: Timestamp) -> Result<u32, Error> {
        if done.is_empty() {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        let job = FinishJob {
            done: done.to_vec(),
            now,
            reply,
        };
        self.finish.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes `first` and whatever else is already waiting, within the group limits.
fn gather<J>(first: J, rx: &mut mpsc::Receiver<J>, rows: impl Fn(&J) -> usize) -> Vec<J> {
    let mut n = rows(&first);
    let mut group = vec![first];
    while n < MAX_GROUP_ROWS && group.len() < MAX_GROUP_REQUESTS {
        match rx.try_recv() {
            Ok(job) => {
                n += rows(&job);
                group.push(job);
            }
            Err(_) => break,
        }
    }
    group
}

async fn ingest_loop(db: Arc<Db>, mut rx: mpsc::Receiver<IngestJob>) {
    while let Some(first) = rx.recv().await {
        let group = gather(first, &mut rx, |j| j.events.len());
        let batches: Vec<&[NewEvent]> = group.iter().map(|j| j.events.as_slice()).collect();
        let results = events::ingest_batches(&db, &batches).await;
        for (job, result) in group.into_iter().zip(results) {
            // The caller may have given up; its events are stored all the same.
            let _ = job.reply.send(result);
        }
    }
}

async fn finish_loop(db: Arc<Db>, mut rx: mpsc::Receiver<FinishJob>) {
    while let Some(first) = rx.recv().await {
        let group = gather(first, &mut rx, |j| j.done.len());
        let jobs: Vec<(&[Completion], Timestamp)> =
            group.iter().map(|j| (j.done.as_slice(), j.now)).collect();
        let results = dispatch::finish_batches(&db, &jobs).await;
        for (job, result) in group.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}
