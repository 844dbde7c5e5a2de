//! Periodic jobs in one process at a time: a session-level advisory lock, held on a connection
//! of its own (outside the pool) for as long as this process runs the job.
//!
//! Why a session lock and not a lease row: it is released by PostgreSQL itself when the holder's
//! session ends (crash, `kill -9`, network loss), so no expiry has to be tuned, and the next
//! process to try takes over at once. The key names the schema, because advisory locks are per
//! database and several blockhook installations (or test schemas) may share one.

use blockhook_core::{Error, JobLock};
use sqlx::{Connection, PgConnection};

use super::store::PgStore;
use crate::classify;

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";

/// The lock of one job, held by this session.
struct SessionLock {
    conn: PgConnection,
}

#[async_trait::async_trait]
impl JobLock for SessionLock {
    async fn held(&mut self) -> bool {
        // The lock lives exactly as long as the session: a session that answers still holds it.
        self.conn.ping().await.is_ok()
    }
}

/// See `Store::try_job_lock`.
pub(super) async fn try_lock(db: &PgStore, job: &str) -> Result<Option<Box<dyn JobLock>>, Error> {
    let mut conn = PgConnection::connect_with(&db.connect)
        .await
        .map_err(classify)?;
    let key = format!("blockhook:{}:{job}", db.schema);
    let got: bool = sqlx::query_scalar(TRY_LOCK)
        .bind(&key)
        .fetch_one(&mut conn)
        .await
        .map_err(classify)?;
    if got {
        Ok(Some(Box::new(SessionLock { conn })))
    } else {
        // Closing the session drops nothing else: it held no lock.
        let _ = conn.close().await;
        Ok(None)
    }
}
