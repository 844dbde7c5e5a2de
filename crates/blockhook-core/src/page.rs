//! Cursor pagination: newest first, keyed on the (time-ordered) id, so concurrent inserts never
//! make a page skip or repeat a row.

use serde::{Deserialize, Serialize};

/// An opaque position in a listing: the id of the last row returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The rows, newest first.
    pub data: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_overfetch(mut rows: Vec<T>, limit: usize, id_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|r| Cursor(id_of(r)))
        } else {
            None
        };
        Self { data: rows, next }
    }
}
