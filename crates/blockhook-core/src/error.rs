//! The crate's one error type: what the domain and the stores can say went wrong.
//!
//! The HTTP layer maps each variant to a status code in one place; variants carry what a caller
//! may see (a field name, a reason), never a secret.

/// An error from the domain or a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input failed validation; `field` names the offending input.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field (JSON pointer-ish name) that was wrong.
        field: &'static str,
        /// Human explanation.
        reason: String,
    },
    /// The thing does not exist, or belongs to another merchant (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state (duplicate, limit reached, wrong state).
    #[error("{0}")]
    Conflict(String),
    /// An idempotency key is already taken by a different event (another event type, or a
    /// payload that is not byte-identical): the publish is refused, nothing is stored.
    #[error(
        "idempotency key {key:?} already names event {original}, which has another event type \
         or payload"
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The event the key names.
        original: crate::EventId,
        /// Position of the refused event in the batch given to the store.
        index: usize,
    },
    /// The store cannot be reached right now (retryable; the API answers 503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or an unexpected storage failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
