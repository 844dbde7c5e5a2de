//! Maps sqlx errors onto the domain's `Error`: connection trouble is `Unavailable` (retryable,
//! 503), constraint violations are `Conflict`, the rest `Internal`.

use blockhook_core::Error;

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
        sqlx::Error::Database(db) => {
            // PostgreSQL: class 08 (connection), 57P0x (shutdown), 53 (resources). SQLite: full
            // disk, read-only, busy.
            let code = db.code().unwrap_or_default();
            if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") {
                Error::Unavailable(err.to_string())
            } else if matches!(code.as_ref(), "13" | "8" | "5" | "10" | "14" | "6") {
                Error::Unavailable(err.to_string())
            } else {
                Error::Internal(err.to_string())
            }
        }
        _ => Error::Internal(err.to_string()),
    }
}
