//! How the management commands print: a readable table (lists) or `key  value` lines (one
//! object) by default, the server's JSON unchanged with `--json` (for scripts and `jq`).

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
            if let Some(next) = map.get("next").and_then(Value::as_str) {
                println!("(more: --after {next})");
            }
        }
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in map {
                println!("{k:<width$}  {}", cell(v));
            }
        }
        other => println!("{}", cell(other)),
    }
}

/// A value as one cell: strings bare, `null` as `-`, the rest as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(rows: &[Value], columns: Columns<'_>) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|(_, field)| cell(&r[*field])).collect())
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
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&Value::from("x")), "x");
        assert_eq!(cell(&serde_json::json!([1, 2])), "[1,2]");
    }
}
