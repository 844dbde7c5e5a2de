//! How long the writer lets the WAL grow before it checkpoints: as long as the disk's free space
//! safely allows, up to [`MAX_PAGES`].
//!
//! Why longer: a checkpoint copies each page once however often it changed, and the commits
//! rewrite the same hot pages, so fewer, longer checkpoints cost less per event and stall the
//! writer less often (BENCHMARKS.md, "Checkpoints sized to the free space": saturated +14 to
//! +20 %, a lower p99). Why not simply longer: SQLite
//! checkpoints by itself only after a successful commit, once the WAL holds `wal_autocheckpoint`
//! pages. A WAL below that size that can no longer grow (the disk is full) is never
//! checkpointed, so after space comes back the store writes until the WAL fills it again, and
//! stops for good unless that much came back. Hence the size follows the free space: a quarter
//! of it, between [`MIN_PAGES`] and [`MAX_PAGES`], looked at every [`RECHECK`] and at once after
//! a transaction the environment refused. After such a refusal the writer also runs a passive
//! checkpoint itself, so that a WAL that cannot grow can start over from its beginning instead.
//! See docs/decisions.md, "Checkpoints sized to the free space".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The fewest WAL pages between checkpoints (2 MiB at our page size).
pub(super) const MIN_PAGES: u32 = 250;
/// The most (32 MiB at our page size).
pub(super) const MAX_PAGES: u32 = 4000;
/// How often the free space is looked at again while transactions succeed.
const RECHECK: Duration = Duration::from_secs(1);

/// The WAL pages between checkpoints for `free` bytes free on the database's file system.
pub(super) fn pages_for(free: u64, page_size: u64) -> u32 {
    let pages = free / 4 / page_size.max(1);
    u32::try_from(pages)
        .unwrap_or(u32::MAX)
        .clamp(MIN_PAGES, MAX_PAGES)
}

/// The writer connection's checkpoint size, kept in step with the free space.
pub(super) struct Checkpoints {
    /// The database's directory, whose file system is looked at.
    dir: PathBuf,
    /// The database's page size, read once.
    page_size: Option<u64>,
    /// What the current connection was set to; `None` for a connection not set yet.
    applied: Option<u32>,
    /// The last look at the free space; `None`: look before the next transaction.
    checked_at: Option<Instant>,
    /// The last transaction was refused: checkpoint before the next one.
    after_refusal: bool,
}

impl Checkpoints {
    pub(super) fn new(database: &Path) -> Self {
        Self {
            dir: database
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            page_size: None,
            applied: None,
            checked_at: None,
            after_refusal: false,
        }
    }

    /// Before a transaction on `conn`: after a refusal, checkpoints what it can (a WAL wholly
    /// copied starts over from its beginning, where it needs no new space); then sets the
    /// checkpoint size if the last look at the free space is older than [`RECHECK`]. Returns
    /// the statements it ran.
    pub(super) fn keep(&mut self, conn: &Connection) -> u64 {
        let mut statements = 0;
        if std::mem::take(&mut self.after_refusal) {
            statements += 1;
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                tracing::debug!(error = %e, "checkpoint after a refused transaction failed");
            }
        }
        if self.checked_at.is_some_and(|at| at.elapsed() < RECHECK) {
            return statements;
        }
        self.checked_at = Some(Instant::now());
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(fs) => fs.f_bavail.saturating_mul(fs.f_frsize),
            Err(e) => {
                tracing::debug!(error = %e, "free space unknown; checkpoint size unchanged");
                return statements;
            }
        };
        let page_size = match self.page_size {
            Some(size) => size,
            None => {
                statements += 1;
                let size = conn
                    .query_row("PRAGMA page_size", [], |r| r.get::<_, u64>(0))
                    .unwrap_or(8192);
                *self.page_size.insert(size)
            }
        };
        let pages = pages_for(free, page_size);
        if self.applied == Some(pages) {
            return statements;
        }
        statements += 1;
        // A failure leaves the size as it was (at first SQLite's default, 1,000 pages).
        match conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {pages}")) {
            Ok(()) => self.applied = Some(pages),
            Err(e) => tracing::debug!(error = %e, "could not set the checkpoint size"),
        }
        statements
    }

    /// After a transaction the environment refused (disk full, I/O error), whose connection is
    /// replaced: the next one checkpoints first and is sized afresh.
    pub(super) fn refused(&mut self) {
        self.after_refusal = true;
        self.applied = None;
        self.checked_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_free_space_within_bounds() {
        const MIB: u64 = 1 << 20;
        assert_eq!(pages_for(0, 8192), MIN_PAGES);
        assert_eq!(
            pages_for(4 * MIB, 8192),
            MIN_PAGES,
            "one MiB of WAL is too few"
        );
        assert_eq!(pages_for(40 * MIB, 8192), 1280, "10 MiB of WAL");
        assert_eq!(pages_for(1 << 40, 8192), MAX_PAGES);
        assert_eq!(pages_for(u64::MAX, 1), MAX_PAGES);
        assert_eq!(
            pages_for(40 * MIB, 0),
            MAX_PAGES,
            "no page size: no division by zero"
        );
    }
}
