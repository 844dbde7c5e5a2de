//! The service layer: what the API and the web dashboard can do to merchants, API keys,
//! endpoints and the event logs, as plain async functions over [`AppState`]. It is the only code
//! either front end uses to reach the store.
//!
//! Every function takes the state and, for tenant-scoped work, the `MerchantId` the caller was
//! authorised for (the API's `Tenant` extractor or the dashboard's session decides that),
//! validates its input with the domain's parsers, calls the store, and returns a view: a
//! serialisable one for the API, or a plain struct of domain values for the dashboard's pages
//! (an event with its deliveries, an endpoint with its health, a merchant with its keys).
//! Handlers in `api/` and `ui/` only extract, call these and render, so both front ends get
//! exactly the same rules without one going through the other's HTTP.
//!
//! Errors are [`ApiError`](crate::ApiError), the one type that knows how failures map to HTTP.

pub mod activity;
pub mod debugger;
pub mod endpoints;
pub mod events;
pub mod merchants;
pub mod ordering;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use blockhook_core::{Cursor, Page};

use crate::error::ApiError;

/// Largest page size of every listing.
pub const MAX_PAGE: u32 = 250;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;

/// `?after=&limit=` of a cursor-paginated listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next` value of the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 250 (default 50).
    pub limit: Option<u32>,
}

impl PageQuery {
    /// The validated limit.
    pub fn limit(&self) -> Result<u32, ApiError> {
        page_limit(self.limit)
    }

    /// The cursor, checked to be an id of the listed kind (`parse` is that kind's id parser),
    /// so a cursor pasted from another listing is a 422 and not a silently empty page.
    pub fn cursor<T>(
        &self,
        parse: impl Fn(&str) -> Result<T, blockhook_core::Error>,
    ) -> Result<Option<Cursor>, ApiError> {
        match self.after.as_deref() {
            None | Some("") => Ok(None),
            Some(raw) => {
                parse(raw)
                    .map_err(|_| ApiError::invalid("after", "not a cursor of this listing"))?;
                Ok(Some(Cursor(raw.to_owned())))
            }
        }
    }
}

/// Validates a page size.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        )),
    }
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PageView<T> {
    /// The rows.
    pub data: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

impl<T> PageView<T> {
    /// Converts a store page, each row through `f`.
    pub fn map<U>(
        page: Page<U>,
        f: impl FnMut(U) -> Result<T, ApiError>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            data: page.data.into_iter().map(f).collect::<Result<_, _>>()?,
            next: page.next.map(|c| c.0),
        })
    }
}

/// A sealing failure is a server fault (bad master key), never the client's.
pub(crate) fn keys_error(e: crate::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}
