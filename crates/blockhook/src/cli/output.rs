//! How the management commands print: a readable table (lists) or `key  value` lines (one
//! object) by default, the server's JSON unchanged with `--json` (for scripts and `jq`).
//!
//! Human output shows times (`*_at` fields and `oldest`, Unix ms on the wire) as ISO-8601 UTC; `--json`
//! keeps the milliseconds.

use serde_json::Value;

/// Columns of a table: header and the field shown under it.
pub type Columns<'a> = &'a [(&'a str, &'a str)];

/// Prints `value`: a list (`{"data": [...]}` page or array) as a table of `columns`, an object
/// as aligned `key  value` lines, nothing for an empty answer; `json` prints it raw.
pub fn print(value: &Value, json: bool, columns: Columns<'_>) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    match value {
        Value::Null => {}
        Value::Array(rows) => table(rows, columns),
        Value::Object(map) if map.get("data").is_some_and(Value::is_array) => {
            table(
                map["data"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                columns,
            );
            if let Some(total) = map.get("total").and_then(Value::as_u64) {
                let capped = map.get("total_capped").and_then(Value::as_bool) == Some(true);
                let s = if total == 1 { "" } else { "es" };
                let more = if capped { "more than " } else { "" };
                println!("{more}{total} match{s}");
            }
            if let Some(prev) = map.get("prev").and_then(Value::as_str) {
                println!("(newer: --before {prev})");
            }
            if let Some(next) = map.get("next").and_then(Value::as_str) {
                println!("(more: --after {next})");
            }
        }
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in map {
                println!("{k:<width$}  {}", cell(k, v));
            }
        }
        other => println!("{}", cell("", other)),
    }
}

/// The value of `field` as one cell: strings bare, `null` as `-`, times (`*_at`) as ISO-8601
/// UTC, the rest as compact JSON.
fn cell(field: &str, v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) if is_time(field) => n
            .as_i64()
            .and_then(super::when::iso8601)
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// Whether the API's `field` holds a time in Unix ms: every `*_at`, and the few older names.
fn is_time(field: &str) -> bool {
    field.ends_with("_at") || matches!(field, "oldest" | "since" | "until")
}

/// Re-indents valid JSON text without parsing values, so `2000.00` and `1E-7` stay as sent
/// and keys keep their order (the receiver kit's re-spacer, which the signature debugger uses).
pub fn pretty_json(text: &str) -> String {
    blockhook_receiver::json_text::pretty(text)
}

fn table(rows: &[Value], columns: Columns<'_>) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(_, field)| cell(field, &r[*field]))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let line = |items: Vec<&str>| {
        let parts: Vec<String> = items
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for r in &cells {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_readable() {
        assert_eq!(cell("id", &Value::Null), "-");
        assert_eq!(cell("id", &Value::from("x")), "x");
        assert_eq!(cell("ids", &serde_json::json!([1, 2])), "[1,2]");
        assert_eq!(
            cell("created_at", &Value::from(1_743_060_268_123_i64)),
            "2025-03-27T07:24:28.123Z"
        );
        assert_eq!(
            cell("attempts", &Value::from(1_743_060_268_123_i64)),
            "1743060268123"
        );
        assert_eq!(cell("created_at", &Value::from(-5)), "-5");
        assert_eq!(cell("oldest", &Value::from(0)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn pretty_json_keeps_literals_and_strings() {
        let body =
            r#"{"a":2000.00,"b":1E-7,"s":"x, {y}: \"z\"","e":{},"l":[ ],"n":[1,{"k":null}]}"#;
        let want = "{\n  \"a\": 2000.00,\n  \"b\": 1E-7,\n  \"s\": \"x, {y}: \\\"z\\\"\",\n  \"e\": {},\n  \"l\": [],\n  \"n\": [\n    1,\n    {\n      \"k\": null\n    }\n  ]\n}";
        assert_eq!(pretty_json(body), want);
        assert_eq!(pretty_json(" {\n\t\"b\" : 1 }\n"), "{\n  \"b\": 1\n}");
    }

    #[test]
    fn pretty_json_keeps_order_and_literals() {
        let raw = r#"{"z":1E-7,"a":[],"m":{"s":"a,b:{\"c\"}\\","n":[1, 2.50]},"e":{}}"#;
        let pretty = pretty_json(raw);
        assert_eq!(
            pretty,
            "{\n  \"z\": 1E-7,\n  \"a\": [],\n  \"m\": {\n    \"s\": \"a,b:{\\\"c\\\"}\\\\\",\n    \
             \"n\": [\n      1,\n      2.50\n    ]\n  },\n  \"e\": {}\n}"
        );
        // Same tokens, same order: removing the added whitespace gives the input back.
        let squeezed: String = {
            let v: Value = serde_json::from_str(&pretty).unwrap();
            let w: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(v, w);
            pretty
                .replace("\n", "")
                .replace("  ", "")
                .replace(": ", ":")
        };
        assert_eq!(squeezed, raw.replace(", ", ","));
    }
}
