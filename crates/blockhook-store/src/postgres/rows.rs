//! What only PostgreSQL needs around rows: the endpoint column list qualified with a table
//! alias, an endpoint's JSON columns encoded for binding, and the filter matching ingest does
//! without building domain values. The row types and their conversion into domain values are
//! shared with SQLite (`crate::rows`), and re-exported here so the concern files import rows from
//! one place.

use blockhook_core::{Endpoint, Error, EventType};

pub(super) use crate::rows::*;

/// The columns `EndpointRow` reads, qualified with the alias `e`, as a literal for `concat!` (so
/// each query stays one `const` string).
macro_rules! endpoint_columns {
    () => {
        "e.id, e.merchant_id, e.url, e.description, e.event_types, e.signing_mode, \
         e.success_policy, e.headers, e.rate_limit, e.label, e.enabled, e.disabled_reason, \
         e.secret, e.previous_secret, e.previous_secret_until, e.created_at, e.updated_at, \
         e.ordering"
    };
}
pub(super) use endpoint_columns;

/// An endpoint's JSON columns, encoded for binding.
pub(super) struct EndpointJson {
    pub(super) event_types: String,
    pub(super) headers: String,
}

impl EndpointJson {
    pub(super) fn of(ep: &Endpoint) -> Result<Self, Error> {
        let enc = |e: serde_json::Error| Error::Internal(format!("encode endpoint: {e}"));
        Ok(Self {
            event_types: serde_json::to_string(&ep.filter).map_err(enc)?,
            headers: serde_json::to_string(&ep.headers).map_err(enc)?,
        })
    }
}

/// The event types of a stored filter (`[]` = every type), without building `EventType`s: ingest
/// only compares names.
pub(super) fn filter_types(event_types: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(event_types).map_err(|e| Error::Internal(format!("stored filter: {e}")))
}

/// Whether an event of type `ty` goes to an endpoint with these filter types (case-insensitive,
/// as `EventFilter::matches`).
pub(super) fn filter_matches(types: &[String], ty: &EventType) -> bool {
    if types.is_empty() {
        // "Every type" leaves out the operational ones, as `EventFilter::matches` does.
        return !blockhook_core::is_operational(ty);
    }
    types.iter().any(|t| t.eq_ignore_ascii_case(ty.as_str()))
}
