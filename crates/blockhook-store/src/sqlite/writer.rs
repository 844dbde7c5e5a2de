//! The writer thread: one OS thread owns the connection that makes the hot path's writes
//! (ingest, claim leases, lease renewals, finished attempts, resends) and runs each transaction
//! whole, without returning to the async runtime between statements.
//!
//! Why (measured, `BENCHMARKS.md`): on sqlx's SQLite driver every statement is a hop to the
//! driver's thread and back to a tokio task that must be scheduled again. Under load those waits,
//! four or five per transaction, held the database's single write lock about 6 ms per
//! transaction for well under 1 ms of work, and every other write queued behind them. Here a
//! transaction costs one hop: callers queue jobs, the thread takes every job waiting, runs all
//! ingests and all finishes together in one transaction (group commit: one fsync shared by many
//! callers), then the other jobs one transaction each, and answers every caller.
//!
//! Finished attempts may wait a moment for company. While events are being ingested (one came
//! within [`FINISH_WINDOW`]), finishes are left on a tray that the thread empties into the next
//! ingest's transaction, without waking it: at an everyday rate one commit and one fsync then
//! serve the event and the previous delivery's outcome, and the thread wakes once per event
//! instead of twice. If no ingest comes within the window, the thread wakes by itself and writes
//! the tray. Finishes go straight to the thread when no ingest is expected, when one lets an
//! ordered delivery go (`Completion::releases_key`), or when enough have gathered. A caller is
//! answered only after its commit, and a completion lost with the process before it is simply
//! attempted again once its lease expires (delivery is at least once), so the tray costs no
//! durability.
//!
//! Management writes (merchants, keys, endpoints, recover, retention) stay on sqlx's writer
//! connection: they are rare, and SQLite's busy timeout orders the two writers on the file lock.
//!
//! A transaction that fails rolls back before the next job runs; if even the rollback fails (the
//! disk went away), the connection is dropped and a fresh one opened for the next job, so one bad
//! moment never leaves the only writer stuck inside a transaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blockhook_core::{Claim, ClaimRequest, Completion, Error, Ingested, NewEvent, Timestamp};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::cache::{EndpointCache, EventCache};
use super::checkpoints::Checkpoints;
use super::files::BUSY_TIMEOUT;
use crate::{SqliteSync, classify_sqlite};

/// Jobs waiting before callers wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// A group of ingests or finishes stops growing at this many events or completions...
const MAX_GROUP_ROWS: usize = 4096;
/// ...or this many jobs in all.
const MAX_GROUP_JOBS: usize = 512;
/// How long finished attempts may wait for an ingest transaction to share, while ingests come
/// at least this often (see the module's doc).
const FINISH_WINDOW: Duration = Duration::from_millis(20);

/// How a transaction's commit must reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// As configured (`StoreOptions::sqlite_sync`).
    Durable,
    /// Lease bookkeeping only: may be lost to a power cut.
    ///
    /// Decision: with `synchronous=FULL` configured, a transaction that only records leases
    /// (claims, renewals) commits with NORMAL instead: losing it to a power cut merely lets the
    /// lease lapse early and the delivery be claimed again (delivery is at-least-once anyway),
    /// and it saves an fsync per claim. The next durable commit fsyncs the WAL, earlier frames
    /// included, so order is kept.
    Relaxed,
}

/// What the writer's transactions share with the rest of the store: the statement counter
/// behind [`Maintenance::statements`](blockhook_core::Maintenance::statements) and the event and endpoint
/// caches.
#[derive(Clone)]
pub(super) struct Cx {
    pub(super) statements: Arc<AtomicU64>,
    pub(super) events: Arc<EventCache>,
    pub(super) endpoints: Arc<EndpointCache>,
    /// Where a claim's second pass over endpoints resumes (see `queue::spread`).
    pub(super) claim_cursor: Arc<std::sync::Mutex<Option<String>>>,
}

impl Cx {
    /// The endpoint after which the next second pass of a claim starts.
    pub(super) fn claim_cursor(&self) -> Option<String> {
        self.claim_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records where the next second pass starts; `None`: from the first endpoint.
    pub(super) fn set_claim_cursor(&self, cursor: Option<String>) {
        *self.claim_cursor.lock().unwrap_or_else(|p| p.into_inner()) = cursor;
    }

    /// Counts `n` statements executed.
    pub(super) fn tick(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }
}

/// A parameter of a multi-row statement, borrowed where it can be (payloads are not copied).
pub(super) type Bind<'a> = ToSqlOutput<'a>;

/// SQL NULL, for the padding rows of multi-row statements (see `rows::padded_chunks`).
pub(super) const NULL: Bind<'static> = ToSqlOutput::Borrowed(ValueRef::Null);

pub(super) fn text(s: &str) -> Bind<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

pub(super) fn blob(b: &[u8]) -> Bind<'_> {
    ToSqlOutput::Borrowed(ValueRef::Blob(b))
}

pub(super) fn int(i: i64) -> Bind<'static> {
    ToSqlOutput::Owned(Value::Integer(i))
}

/// What the thread runs inside a group's transaction, handed in when the thread starts, so that
/// this file, below the concern files, does not import them (`events::ingest_group`,
/// `events::remember_ingested`, `queue::finish_group`).
#[derive(Clone, Copy)]
pub(super) struct Groups {
    /// Stores several callers' event batches: one answer per batch, or an error that fails the
    /// transaction.
    pub(super) ingest: IngestGroup,
    /// After the commit: what the store keeps of the events just stored.
    pub(super) ingested: RememberIngested,
    /// Applies several callers' completions (with their `now`): how many of each applied.
    pub(super) finish: FinishGroup,
}

/// See [`Groups::ingest`].
pub(super) type IngestGroup =
    fn(&Cx, &Connection, &[Batch<'_>]) -> Result<Vec<Result<Stored, Error>>, Error>;

/// See [`Groups::ingested`].
pub(super) type RememberIngested = fn(&Cx, &[Batch<'_>], &[Result<Stored, Error>]);

/// One caller's events in a group, with the hand-off's request when it asked to lease.
pub(super) struct Batch<'a> {
    pub(super) events: &'a [NewEvent],
    pub(super) lease: Option<&'a ClaimRequest>,
}

/// What one batch stored: the answers, the claims of the deliveries inserted already leased,
/// and what is left of the hand-off's request for its joined claim (`None`: nothing to claim).
pub(super) struct Stored {
    pub(super) answers: Vec<Ingested>,
    pub(super) claims: Vec<Claim>,
    pub(super) rest: Option<ClaimRequest>,
}

/// See [`Groups::finish`].
pub(super) type FinishGroup =
    fn(&Cx, &Connection, &[(&[Completion], Timestamp)]) -> Result<Vec<u32>, Error>;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Work that joins an ingest's transaction, after the group's ingests and finishes (a
/// hand-off's claim), given what is left of its batch's request ([`Stored::rest`]): it returns
/// what answers its caller once the transaction has ended, told whether it committed.
pub(super) type Joined =
    Box<dyn FnOnce(&Connection, &Cx, Option<&ClaimRequest>) -> Box<dyn FnOnce(bool) + Send> + Send>;

/// An ingest job: the events, the hand-off's request, the work joining its transaction, who
/// waits.
struct Ingest {
    events: Vec<NewEvent>,
    lease: Option<ClaimRequest>,
    joined: Option<Joined>,
    reply: Reply<(Vec<Ingested>, Vec<Claim>)>,
}

enum Job {
    Ingest(Ingest),
    Finish(Finish),
    /// Any other write: runs in a transaction of its own and answers its caller itself.
    Run(Box<dyn FnOnce(&mut Session) + Send>),
}

impl Job {
    fn rows(&self) -> usize {
        match self {
            Job::Ingest(i) => i.events.len(),
            Job::Finish(f) => f.done.len(),
            Job::Run(_) => 1,
        }
    }
}

/// Completions on their way to a transaction, and who waits for them.
struct Finish {
    done: Arc<[Completion]>,
    now: Timestamp,
    reply: Reply<u32>,
}

/// The handle the store's async methods send jobs through. Dropping it stops the thread once
/// the jobs already queued are done.
pub(super) struct Writer {
    jobs: flume::Sender<Job>,
    tray: Arc<Mutex<Tray>>,
}

/// Finishes left for the thread to take into its next ingest transaction (see the module's doc).
#[derive(Default)]
struct Tray {
    finishes: Vec<Finish>,
    rows: usize,
    /// The thread is writing ingests and will take the tray within [`FINISH_WINDOW`] without a
    /// wake. Set and cleared by the thread, under the same lock as the tray, so that a finish
    /// left while it is set is always taken.
    collecting: bool,
}

impl Tray {
    /// Leaves `finish` on the tray if the thread will come for it; otherwise gives it back.
    fn leave(&mut self, finish: Finish) -> Option<Finish> {
        let rows = self.rows + finish.done.len();
        if !self.collecting || rows >= MAX_GROUP_ROWS || finish.done.iter().any(|c| c.releases_key)
        {
            return Some(finish);
        }
        self.rows = rows;
        self.finishes.push(finish);
        None
    }

    /// Takes what is on the tray; `collecting` says whether the thread keeps coming for more.
    fn take(&mut self, collecting: bool) -> Vec<Finish> {
        self.collecting = collecting;
        self.rows = 0;
        std::mem::take(&mut self.finishes)
    }
}

fn lock(tray: &Mutex<Tray>) -> std::sync::MutexGuard<'_, Tray> {
    tray.lock().unwrap_or_else(|p| p.into_inner())
}

fn stopped() -> Error {
    Error::Unavailable("the SQLite writer thread stopped".to_owned())
}

impl Writer {
    /// Opens the writing connection to the (already migrated) database at `path` and starts the
    /// thread.
    pub(super) fn start(
        path: &Path,
        sync: SqliteSync,
        cx: Cx,
        groups: Groups,
    ) -> Result<Self, Error> {
        let mut session = Session {
            conn: None,
            path: path.to_owned(),
            configured: sync,
            level: None,
            checkpoints: Checkpoints::new(path),
            cx,
        };
        session.connection()?;
        let (jobs, rx) = flume::bounded(QUEUE_DEPTH);
        let tray = Arc::new(Mutex::new(Tray::default()));
        let thread_tray = Arc::clone(&tray);
        std::thread::Builder::new()
            .name("blockhook-sqlite-writer".to_owned())
            .spawn(move || run(session, rx, &thread_tray, groups))
            .map_err(|e| Error::Unavailable(format!("start the SQLite writer thread: {e}")))?;
        Ok(Self { jobs, tray })
    }

    /// Stores `events` (possibly in one transaction with other callers' events), leasing at
    /// insert what `lease` allows (see `events::ingest_group`), then runs `joined` in the same
    /// transaction. Returns the answers and the claims leased at insert.
    pub(super) async fn ingest(
        &self,
        events: &[NewEvent],
        lease: Option<ClaimRequest>,
        joined: Option<Joined>,
    ) -> Result<(Vec<Ingested>, Vec<Claim>), Error> {
        if events.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Ingest(Ingest {
            events: events.to_vec(),
            lease,
            joined,
            reply,
        });
        self.jobs.send_async(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records finished attempts (possibly in one transaction with other callers' completions).
    pub(super) async fn finish(
        &self,
        done: Arc<[Completion]>,
        now: Timestamp,
    ) -> Result<u32, Error> {
        if done.is_empty() {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        let finish = Finish { done, now, reply };
        let unattended = lock(&self.tray).leave(finish);
        if let Some(finish) = unattended {
            let job = Job::Finish(finish);
            self.jobs.send_async(job).await.map_err(|_| stopped())?;
        }
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `work` in a write transaction of its own on the writer thread: committed when it
    /// returns `Ok`, rolled back when it returns an error.
    pub(super) async fn run<T, F>(&self, durability: Durability, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Cx) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Run(Box::new(move |session: &mut Session| {
            let result = session.transaction(durability, work);
            // The caller may have given up; a committed write stays committed.
            let _ = reply.send(result);
        }));
        self.jobs.send_async(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Writer {
    /// Runs `f` on the thread's connection outside any transaction (tests).
    #[cfg(test)]
    pub(super) async fn raw<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Run(Box::new(move |session: &mut Session| {
            let result = session.connection().map(|conn| f(conn));
            let _ = reply.send(result);
        }));
        self.jobs.send_async(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The thread's state: the connection (reopened after a failure that left it unusable) and the
/// `synchronous` level it was last set to.
pub(super) struct Session {
    conn: Option<Connection>,
    path: PathBuf,
    configured: SqliteSync,
    /// The connection's current `synchronous` level; `None` when unknown.
    level: Option<SqliteSync>,
    /// Its checkpoint size, kept in step with the free space (and a checkpoint after a refusal).
    checkpoints: Checkpoints,
    cx: Cx,
}

impl Session {
    /// The connection, opened (with the store's pragmas) if there is none.
    fn connection(&mut self) -> Result<&mut Connection, Error> {
        if self.conn.is_none() {
            let conn = open(&self.path, self.configured)?;
            self.level = Some(self.configured);
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Internal("SQLite writer connection missing".into()))
    }

    /// Runs `work` between `BEGIN IMMEDIATE` and `COMMIT` (or `ROLLBACK` on error).
    pub(super) fn transaction<T>(
        &mut self,
        durability: Durability,
        work: impl FnOnce(&Connection, &Cx) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let want = match (self.configured, durability) {
            (SqliteSync::Full, Durability::Durable) => SqliteSync::Full,
            _ => SqliteSync::Normal,
        };
        let cx = self.cx.clone();
        let level = self.level;
        let conn = self.connection()?;
        if level != Some(want) {
            // SQLite refuses to change the level inside a transaction, hence here, before BEGIN.
            cx.tick(1);
            let pragma = match want {
                SqliteSync::Full => "PRAGMA synchronous = FULL",
                SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
            };
            conn.execute_batch(pragma).map_err(classify_sqlite)?;
            self.level = Some(want);
        }
        // Opened above: borrowed beside the checkpoint state, not through `connection`.
        let Self {
            conn, checkpoints, ..
        } = self;
        let conn = conn
            .as_ref()
            .ok_or_else(|| Error::Internal("SQLite writer connection missing".into()))?;
        cx.tick(checkpoints.keep(conn));
        cx.tick(1);
        let result = conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .map_err(classify_sqlite)
            .and_then(|_| work(conn, &cx))
            .and_then(|value| {
                cx.tick(1);
                conn.prepare_cached("COMMIT")
                    .and_then(|mut s| s.execute([]))
                    .map_err(classify_sqlite)?;
                Ok(value)
            });
        if result.is_err() {
            self.rollback();
        }
        if matches!(result, Err(Error::Unavailable(_))) {
            // Decision: after a failure caused by the environment (disk full, I/O error,
            // read-only file) the connection is replaced even when the rollback worked. SQLite
            // silently opens a database read-only when it cannot open it read-write (the data
            // directory was read-only at that moment), and such a connection stays read-only
            // for its whole life: writes would keep failing after the directory is writable
            // again. A reopen costs little, and only on this path.
            self.conn = None;
            self.level = None;
            self.checkpoints.refused();
        }
        result
    }

    /// Ends a failed transaction. After SQLITE_FULL or SQLITE_IOERR, SQLite may already have
    /// rolled back by itself (then there is nothing to do); a ROLLBACK that fails means the
    /// connection cannot be trusted, so it is closed (closing rolls back) and reopened later.
    fn rollback(&mut self) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if conn.is_autocommit() {
            return;
        }
        self.cx.tick(1);
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "rollback failed; reopening the SQLite writer connection");
            self.conn = None;
            self.level = None;
        }
    }
}

/// Opens the writing connection with the same settings as the store's sqlx connections.
fn open(path: &Path, sync: SqliteSync) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify_sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify_sqlite)?;
    let level = match sync {
        SqliteSync::Full => "FULL",
        SqliteSync::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {level}; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -16384;"
    ))
    .map_err(classify_sqlite)?;
    // Statements are few and fixed (plus nine padded shapes per multi-row statement).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// The thread: takes every job waiting (within the group limits), runs the ingests and the
/// finishes together (with those left on the tray while ingests come, see the module's doc),
/// then each other job, and answers all of them.
fn run(mut session: Session, rx: flume::Receiver<Job>, tray: &Mutex<Tray>, groups: Groups) {
    // When the last ingest was written, while the tray is being collected.
    let mut last_ingest: Option<Instant> = None;
    loop {
        let first = match last_ingest {
            None => rx.recv().ok(),
            Some(at) => match rx.recv_deadline(at + FINISH_WINDOW) {
                Ok(job) => Some(job),
                Err(flume::RecvTimeoutError::Timeout) => {
                    // No ingest came: write what was left, and have finishes sent from now on.
                    let left = lock(tray).take(false);
                    write_group(&mut session, groups, Vec::new(), left);
                    last_ingest = None;
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else { break };
        let mut rows = first.rows();
        let mut group = vec![first];
        while rows < MAX_GROUP_ROWS && group.len() < MAX_GROUP_JOBS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.rows();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let mut ingests = Vec::new();
        let mut finishes = Vec::new();
        let mut others = Vec::new();
        for job in group {
            match job {
                Job::Ingest(i) => ingests.push(i),
                Job::Finish(f) => finishes.push(f),
                Job::Run(work) => others.push(work),
            }
        }
        if !ingests.is_empty() {
            last_ingest = Some(Instant::now());
        }
        if !ingests.is_empty() || !finishes.is_empty() {
            // The tray rides along; it stays open while ingests come.
            finishes.extend(lock(tray).take(last_ingest.is_some()));
            // Ingests first in the transaction: a claim queued behind them sees their deliveries.
            write_group(&mut session, groups, ingests, finishes);
        }
        for work in others {
            work(&mut session);
        }
    }
    // The queue closed (the store was dropped): what is on the tray is still written.
    let left = lock(tray).take(false);
    write_group(&mut session, groups, Vec::new(), left);
}

/// Ingests, finishes and the work joining the ingests in one durable transaction, each caller
/// answered; if it fails, each caller is tried alone (without joined work), so that one bad
/// batch cannot fail the others.
fn write_group(session: &mut Session, groups: Groups, ingests: Vec<Ingest>, finishes: Vec<Finish>) {
    if ingests.is_empty() && finishes.is_empty() {
        return;
    }
    let mut ingests = ingests;
    // Each with the index of its ingest, whose rest of the request it is given.
    let joined: Vec<(usize, Joined)> = ingests
        .iter_mut()
        .enumerate()
        .filter_map(|(n, i)| Some((n, i.joined.take()?)))
        .collect();
    let batches: Vec<Batch<'_>> = ingests
        .iter()
        .map(|i| Batch {
            events: &i.events,
            lease: i.lease.as_ref(),
        })
        .collect();
    let jobs: Vec<(&[Completion], Timestamp)> =
        finishes.iter().map(|f| (&f.done[..], f.now)).collect();
    let mut answers: Vec<Box<dyn FnOnce(bool) + Send>> = Vec::new();
    let together = session.transaction(Durability::Durable, |conn, cx| {
        let stored = match batches.is_empty() {
            true => Vec::new(),
            false => (groups.ingest)(cx, conn, &batches)?,
        };
        let applied = match jobs.is_empty() {
            true => Vec::new(),
            false => (groups.finish)(cx, conn, &jobs)?,
        };
        answers.extend(joined.into_iter().map(|(n, work)| {
            let rest = stored
                .get(n)
                .and_then(|s| s.as_ref().ok())
                .and_then(|s| s.rest.as_ref());
            work(conn, cx, rest)
        }));
        Ok((stored, applied))
    });
    for answer in answers {
        answer(together.is_ok());
    }
    match together {
        Ok((stored, applied)) => {
            (groups.ingested)(&session.cx, &batches, &stored);
            for (ingest, result) in ingests.into_iter().zip(stored) {
                let _ = ingest.reply.send(result.map(|s| (s.answers, s.claims)));
            }
            for (f, n) in finishes.into_iter().zip(applied) {
                let _ = f.reply.send(Ok(n));
            }
        }
        Err(e) if ingests.len() + finishes.len() == 1 => {
            if let Some(ingest) = ingests.into_iter().next() {
                let _ = ingest.reply.send(Err(e));
            } else if let Some(f) = finishes.into_iter().next() {
                let _ = f.reply.send(Err(e));
            }
        }
        Err(_) => {
            for ingest in ingests {
                write_group(session, groups, vec![ingest], Vec::new());
            }
            for finish in finishes {
                write_group(session, groups, Vec::new(), vec![finish]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sqlite::tests::failures::T0;

    fn finish(rows: usize, releases_key: bool) -> Finish {
        let c = crate::sqlite::tests::failures::any_completion(releases_key);
        let done: Arc<[Completion]> = vec![c; rows].into();
        Finish {
            done,
            now: T0,
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn the_tray_keeps_a_finish_only_while_the_thread_collects() {
        let mut tray = Tray::default();
        assert!(tray.leave(finish(1, false)).is_some(), "not collecting");
        tray.take(true);
        assert!(tray.leave(finish(2, false)).is_none());
        assert!(tray.leave(finish(1, false)).is_none());
        assert_eq!(tray.rows, 3);
        assert!(
            tray.leave(finish(1, true)).is_some(),
            "a key's release is not kept waiting"
        );
        assert!(
            tray.leave(finish(MAX_GROUP_ROWS, false)).is_some(),
            "too many for one group"
        );
        let taken = tray.take(false);
        assert_eq!(taken.len(), 2);
        assert_eq!(tray.rows, 0);
        assert!(tray.leave(finish(1, false)).is_some(), "closed again");
    }
}
