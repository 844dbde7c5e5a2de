//! Maps sqlx (and, for the SQLite writer thread, rusqlite) errors onto the domain's `Error`: trouble that goes away by itself (connection lost,
//! server shutting down or overloaded, lock contention) is `Unavailable` (retryable, 503),
//! constraint violations are `Conflict`, the rest `Internal`.
//!
//! Database error codes are read per backend (PostgreSQL SQLSTATEs and SQLite result codes are
//! both short strings of digits, so matching them in one list would confuse the two).

use blockhook_core::Error;
use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;

/// Classifies a sqlx error.
pub fn classify(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Error::Unavailable(err.to_string()),
        sqlx::Error::RowNotFound => Error::NotFound("row"),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::Conflict("already exists".to_owned())
        }
        sqlx::Error::Database(db) if transient(db.as_ref()) => Error::Unavailable(err.to_string()),
        _ => Error::Internal(err.to_string()),
    }
}

/// Classifies an error of the SQLite writer thread's connection (rusqlite; see
/// `sqlite::writer`) by the same rules as [`classify`].
pub fn classify_sqlite(err: rusqlite::Error) -> Error {
    match &err {
        rusqlite::Error::SqliteFailure(e, _) => {
            // SQLITE_CONSTRAINT_PRIMARYKEY (1555) and SQLITE_CONSTRAINT_UNIQUE (2067).
            if e.code == rusqlite::ErrorCode::ConstraintViolation
                && matches!(e.extended_code, 1555 | 2067)
            {
                Error::Conflict("already exists".to_owned())
            } else if sqlite_transient(e.extended_code & 0xff) {
                Error::Unavailable(err.to_string())
            } else {
                Error::Internal(err.to_string())
            }
        }
        rusqlite::Error::QueryReturnedNoRows => Error::NotFound("row"),
        _ => Error::Internal(err.to_string()),
    }
}

/// Whether a database error goes away by itself, so that the caller may retry later.
fn transient(db: &dyn DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        return pg_transient(pg.code());
    }
    // SQLite: the extended result code, in decimal; its low byte is the primary code.
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|code| sqlite_transient(code & 0xff))
}

/// PostgreSQL SQLSTATEs that mean "not now" rather than "never".
fn pg_transient(sqlstate: &str) -> bool {
    // Classes: 08 connection exception; 53 insufficient resources (too many connections, disk
    // full, out of memory); 58 system error (I/O).
    let class = sqlstate.get(..2).unwrap_or_default();
    matches!(class, "08" | "53" | "58")
        || matches!(
            sqlstate,
            // Shutdown, crash recovery, "database system is starting up", idle-session timeout.
            "57P01" | "57P02" | "57P03" | "57P05"
            // Statement timeout or cancel.
            | "57014"
            // Serialization failure, deadlock: the transaction can simply be retried.
            | "40001" | "40P01"
            // Lock not available (lock_timeout).
            | "55P03"
            // Connected to a read-only standby, e.g. right after a failover.
            | "25006"
        )
}

/// SQLite primary result codes that mean "not now": BUSY (5), LOCKED (6), READONLY (8),
/// IOERR (10), FULL (13), CANTOPEN (14).
fn sqlite_transient(primary: i32) -> bool {
    matches!(primary, 5 | 6 | 8 | 10 | 13 | 14)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_codes() {
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "40P01", "40001", "25006",
        ] {
            assert!(pg_transient(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "22012", "42601", "P0001", ""] {
            assert!(!pg_transient(code), "{code}");
        }
    }

    #[test]
    fn sqlite_codes_by_primary() {
        // BUSY, BUSY_SNAPSHOT (517), BUSY_TIMEOUT (773), IOERR_FSYNC (1034), FULL, CANTOPEN.
        for code in [5, 517, 773, 6, 8, 10, 1034, 13, 14] {
            assert!(sqlite_transient(code & 0xff), "{code}");
        }
        // ERROR, CONSTRAINT_FOREIGNKEY (787), CORRUPT, MISMATCH.
        for code in [1, 787, 11, 20] {
            assert!(!sqlite_transient(code & 0xff), "{code}");
        }
    }
}
