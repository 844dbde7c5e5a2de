//! Operating the database itself rather than the domain: which backend it is, whether it
//! answers, how busy it is, retention, clean shutdown, one-process-at-a-time jobs, and the
//! values the master key seals (the key check and every endpoint secret), which key rotation
//! reads and rewrites.

use crate::{EndpointId, Error, SealedSecret, Timestamp};

use super::{JobLock, QueueStats, SoleProcess};

/// Which of an endpoint's sealed secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSlot {
    /// The secret deliveries are signed with (`Endpoint::secret`).
    Current,
    /// The secret before the last rotation, while its overlap lasts (`Endpoint::previous_secret`).
    Previous,
}

/// Operations on the store as a whole.
#[async_trait::async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Checks the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), Error>;

    /// SQL statements executed since the store was opened (to measure round trips per event).
    fn statements(&self) -> u64;

    /// Queue depth and totals.
    async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats, Error>;
    /// Retention: removes up to `batch` payloads of events created before `before` (the event
    /// row stays, `payload` becomes `None`; pending deliveries keep their payload) and up to
    /// `batch` attempts started before `before`. Returns rows affected; call until 0.
    async fn purge_before(&self, before: Timestamp, batch: u32) -> Result<u64, Error>;

    /// Makes the database complete on its own before a clean exit (SQLite: moves the WAL into
    /// the database file and empties it, so a copy of the file alone is a whole backup).
    async fn checkpoint(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Takes the lock of the periodic job `job` unless another process holds it (`None`). The
    /// embedded store serves one process, so it always grants it.
    async fn try_job_lock(&self, job: &str) -> Result<Option<Box<dyn JobLock>>, Error> {
        let _ = job;
        Ok(Some(Box::new(SoleProcess)))
    }

    /// The key check value (a known text sealed with the master key), if one was written.
    async fn key_check(&self) -> Result<Option<Vec<u8>>, Error>;
    /// Stores `sealed` as the key check value unless one exists, and returns the value stored
    /// (the existing one when another process wrote it first).
    async fn init_key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, Error>;
    /// Replaces the key check value if it still is `expected` (compare-and-set); whether it did.
    async fn replace_key_check(&self, expected: &[u8], new: &[u8]) -> Result<bool, Error>;
    /// The sealed secrets of at most `limit` endpoints after `after`, in id order: each
    /// endpoint's current secret, then its previous one while it has one (a rotation's overlap).
    async fn sealed_secrets(
        &self,
        after: Option<&EndpointId>,
        limit: u32,
    ) -> Result<Vec<(EndpointId, SecretSlot, SealedSecret)>, Error>;
    /// Replaces one of an endpoint's sealed secrets if it still is `expected` (compare-and-set,
    /// so a concurrent rotation is never overwritten); whether it did.
    async fn reseal_secret(
        &self,
        id: &EndpointId,
        slot: SecretSlot,
        expected: &SealedSecret,
        new: &SealedSecret,
    ) -> Result<bool, Error>;
}
