//! Finding an event by a value of its payload ("find the payment of order 42"): the configured
//! list of searchable top-level payload fields, and the (field, value) keys an event is indexed
//! under when it is stored. The store keeps those keys beside the event, written in the same
//! transaction, and answers [`crate::EventQuery::key`] with an index lookup, never a scan of
//! payloads.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::{Error, Payload};

/// Most fields one deployment may index: each costs one index row per event that has it.
pub const MAX_SEARCH_FIELDS: usize = 8;

/// Longest value indexed, in bytes; a longer one is not an identifier and is left out (a search
/// for it finds nothing), so one payload cannot bloat the index.
pub const MAX_SEARCH_VALUE_LEN: usize = 256;

/// One (field, value) an event can be found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchKey {
    /// A top-level payload field, one of the configured [`SearchFields`].
    pub field: String,
    /// Its value: a string's text (unescaped), or a number exactly as written in the payload.
    pub value: String,
}

/// The searchable top-level payload fields, checked: at most [`MAX_SEARCH_FIELDS`] distinct
/// names of 1 to 64 characters of `[A-Za-z0-9_.-]`. None at all turns the index off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchFields(Vec<String>);

impl Default for SearchFields {
    /// `["orderNo"]`, the order number of every BlockATM payment and payout payload.
    fn default() -> Self {
        Self(vec!["orderNo".to_owned()])
    }
}

impl SearchFields {
    /// Checks a configured list.
    pub fn new(fields: &[String]) -> Result<Self, Error> {
        if fields.len() > MAX_SEARCH_FIELDS {
            return Err(Error::invalid(
                "fields",
                format!("must list at most {MAX_SEARCH_FIELDS} field names"),
            ));
        }
        let mut seen: Vec<String> = Vec::with_capacity(fields.len());
        for f in fields {
            if !Self::name_ok(f) {
                return Err(Error::invalid(
                    "fields",
                    format!(
                        "{f:?} is not a field name (1 to 64 of letters, digits, '_', '.', '-')"
                    ),
                ));
            }
            if seen.contains(f) {
                return Err(Error::invalid("fields", format!("{f:?} is listed twice")));
            }
            seen.push(f.clone());
        }
        Ok(Self(seen))
    }

    fn name_ok(f: &str) -> bool {
        !f.is_empty()
            && f.len() <= 64
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    }

    /// The names, in configured order.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether `field` is searchable.
    pub fn contains(&self, field: &str) -> bool {
        self.0.iter().any(|f| f == field)
    }

    /// The keys `payload` is indexed under: each configured field present at the top level as a
    /// string or a number of at most [`MAX_SEARCH_VALUE_LEN`] bytes. Other types (objects,
    /// arrays, booleans, null) are not identifiers and are skipped. A payload that does not
    /// parse (never, for a checked one) has no keys.
    pub fn keys_of(&self, payload: &Payload) -> Vec<SearchKey> {
        if self.0.is_empty() {
            return Vec::new();
        }
        // Borrowed raw values: nothing is built for the fields that are not searched.
        let Ok(top) = serde_json::from_slice::<HashMap<&str, &RawValue>>(payload.bytes()) else {
            // A key with escapes cannot be borrowed; fall back to owned keys.
            return self.keys_of_owned(payload);
        };
        self.0
            .iter()
            .filter_map(|f| top.get(f.as_str()).and_then(|raw| key(f, raw)))
            .collect()
    }

    fn keys_of_owned(&self, payload: &Payload) -> Vec<SearchKey> {
        let Ok(top) = serde_json::from_slice::<HashMap<String, &RawValue>>(payload.bytes()) else {
            return Vec::new();
        };
        self.0
            .iter()
            .filter_map(|f| top.get(f).and_then(|raw| key(f, raw)))
            .collect()
    }
}

fn key(field: &str, raw: &RawValue) -> Option<SearchKey> {
    let text = raw.get();
    let value = match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok()?,
        b'-' | b'0'..=b'9' => text.to_owned(),
        _ => return None,
    };
    (!value.is_empty() && value.len() <= MAX_SEARCH_VALUE_LEN).then(|| SearchKey {
        field: field.to_owned(),
        value,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;

    fn payload(s: &'static str) -> Payload {
        Payload::parse(Bytes::from_static(s.as_bytes())).unwrap()
    }

    fn fields(names: &[&str]) -> SearchFields {
        SearchFields::new(&names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn strings_and_numbers_at_the_top_level_are_keys() {
        let f = fields(&["orderNo", "txId", "amount", "nested", "flag"]);
        let keys = f.keys_of(&payload(
            r#"{"orderNo":"A\u00e9-1","amount":1.50,"nested":{"orderNo":"x"},"flag":true,"txId":""}"#,
        ));
        assert_eq!(
            keys,
            vec![
                SearchKey {
                    field: "orderNo".into(),
                    value: "Aé-1".into()
                },
                SearchKey {
                    field: "amount".into(),
                    value: "1.50".into()
                },
            ]
        );
    }

    #[test]
    fn escaped_keys_and_long_values() {
        let f = fields(&["orderNo"]);
        let keys = f.keys_of(&payload(r#"{"order\u004eo":"7","x\n":1}"#));
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].value, "7");
        let long = format!(
            r#"{{"orderNo":"{}"}}"#,
            "a".repeat(MAX_SEARCH_VALUE_LEN + 1)
        );
        let p = Payload::parse(Bytes::from(long)).unwrap();
        assert!(f.keys_of(&p).is_empty());
    }

    #[test]
    fn the_list_is_checked() {
        assert!(
            SearchFields::new(&[])
                .unwrap()
                .keys_of(&payload(r#"{"orderNo":"1"}"#))
                .is_empty()
        );
        assert!(SearchFields::new(&["a b".to_owned()]).is_err());
        assert!(SearchFields::new(&["a".to_owned(), "a".to_owned()]).is_err());
        let nine: Vec<String> = (0..9).map(|i| format!("f{i}")).collect();
        assert!(SearchFields::new(&nine).is_err());
        assert!(SearchFields::new(&nine[..8]).is_ok());
        assert_eq!(SearchFields::default().names(), ["orderNo"]);
    }
}
