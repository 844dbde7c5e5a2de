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
    /// Pass as `before` to get the previous (newer) page; `None` on the first page. Only
    /// listings that page backwards set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<Cursor>,
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
        Self {
            data: rows,
            next,
            prev: None,
        }
    }

    /// Builds a page that can be paged both ways from `limit + 1` fetched rows. Forwards
    /// (`backwards` false) the rows come newest first, after the cursor if `from_cursor`; then
    /// there is a previous page exactly when a cursor was given (the cursor's row is newer).
    /// Backwards the rows come oldest first, newer than the cursor: they are turned to newest
    /// first, the extra row says there is a previous page, and the cursor's row is older.
    pub fn both_ways(
        mut rows: Vec<T>,
        limit: usize,
        from_cursor: bool,
        backwards: bool,
        id_of: impl Fn(&T) -> String,
    ) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        if backwards {
            rows.reverse();
        }
        let first = rows.first().map(|r| Cursor(id_of(r)));
        let last = rows.last().map(|r| Cursor(id_of(r)));
        let (next, prev) = if backwards {
            (last, if more { first } else { None })
        } else {
            (
                if more { last } else { None },
                if from_cursor { first } else { None },
            )
        };
        Self {
            data: rows,
            next,
            prev,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(p: &Page<u32>) -> (Vec<u32>, Option<String>, Option<String>) {
        (
            p.data.clone(),
            p.next.as_ref().map(|c| c.0.clone()),
            p.prev.as_ref().map(|c| c.0.clone()),
        )
    }

    #[test]
    fn both_ways_sets_next_and_prev() {
        let s = |n: &u32| n.to_string();
        let some = |n: u32| Some(n.to_string());
        // First page of 9, 8, 7, ...: more after, nothing before.
        let p = Page::both_ways(vec![9, 8, 7], 2, false, false, s);
        assert_eq!(ids(&p), (vec![9, 8], some(8), None));
        // After 8: the last page, with a way back.
        let p = Page::both_ways(vec![7], 2, true, false, s);
        assert_eq!(ids(&p), (vec![7], None, some(7)));
        // Before 5, oldest first from the store: 6, 7, 8 (8 is the extra one).
        let p = Page::both_ways(vec![6, 7, 8], 2, true, true, s);
        assert_eq!(ids(&p), (vec![7, 6], some(6), some(7)));
        // Before 7: only 8 and 9 are newer, the first page.
        let p = Page::both_ways(vec![8, 9], 2, true, true, s);
        assert_eq!(ids(&p), (vec![9, 8], some(8), None));
    }
}
