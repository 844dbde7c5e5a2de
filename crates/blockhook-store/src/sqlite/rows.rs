//! What only SQLite needs around rows: page limits, multi-row INSERT chunking, id lists bound as
//! JSON, and decoding an endpoint row on the writer thread's rusqlite connection. The row types
//! and their conversion into domain values are shared with PostgreSQL (`crate::rows`), and
//! re-exported here so the concern files import rows from one place.

use blockhook_core::Error;

pub(super) use crate::rows::*;

/// The largest page any listing returns, whatever the caller asks.
pub(super) const MAX_PAGE: u32 = 1000;

/// Rows per multi-row statement at most.
pub(super) const MAX_ROWS: usize = 256;

/// Splits a batch for multi-row statements: slices of at most [`MAX_ROWS`], each with the row
/// count its statement is written for, the next power of two. The statement's extra rows are
/// bound to NULL and filtered out in SQL (`WHERE column1 IS NOT NULL`), so nine SQL texts (1 to
/// 256 rows) serve every batch size: each is prepared once per connection, and a batch of any
/// size is one statement per 256 rows.
pub(super) fn padded_chunks<T>(items: &[T]) -> impl Iterator<Item = (&[T], usize)> {
    items
        .chunks(MAX_ROWS)
        .map(|c| (c, c.len().next_power_of_two()))
}

/// `(?, ?, ?), (?, ?, ?)`: `rows` tuples of `cols` placeholders, for `VALUES`.
pub(super) fn placeholders(rows: usize, cols: usize) -> String {
    let tuple = format!("({})", vec!["?"; cols].join(", "));
    vec![tuple.as_str(); rows].join(", ")
}

/// A page size as SQL `LIMIT` for an over-fetch of one row (see `Page::from_overfetch`).
pub(super) fn page_limit(limit: u32) -> (usize, i64) {
    let limit = limit.clamp(1, MAX_PAGE);
    (limit as usize, i64::from(limit) + 1)
}

/// Ids (or any strings) as a JSON array, bound as one parameter and unpacked in SQL with
/// `json_each`, so a list of any length is one statement with one cached plan.
pub(super) fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<String, Error> {
    serde_json::to_string(&items.into_iter().collect::<Vec<_>>())
        .map_err(|e| Error::Internal(format!("encode id list: {e}")))
}

impl EndpointRow {
    /// Reads the columns of `endpoint_columns!()`, in that order, from a row of the writer
    /// thread's rusqlite connection.
    pub(super) fn from_rusqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            merchant_id: r.get(1)?,
            url: r.get(2)?,
            description: r.get(3)?,
            event_types: r.get(4)?,
            signing_mode: r.get(5)?,
            success_policy: r.get(6)?,
            headers: r.get(7)?,
            rate_limit: r.get(8)?,
            label: r.get(9)?,
            enabled: r.get(10)?,
            disabled_reason: r.get(11)?,
            secret: r.get(12)?,
            previous_secret: r.get(13)?,
            previous_secret_until: r.get(14)?,
            created_at: r.get(15)?,
            updated_at: r.get(16)?,
            ordering: r.get(17)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_chunks_use_few_shapes() {
        let items: Vec<u32> = (0..1000).collect();
        let parts: Vec<_> = padded_chunks(&items).collect();
        assert_eq!(parts.iter().map(|(c, _)| c.len()).sum::<usize>(), 1000);
        assert_eq!(
            parts.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            vec![256, 256, 256, 256]
        );
        let few: Vec<_> = padded_chunks(&items[..5])
            .map(|(c, n)| (c.len(), n))
            .collect();
        assert_eq!(few, vec![(5, 8)]);
        assert_eq!(padded_chunks::<u32>(&[]).count(), 0);
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
