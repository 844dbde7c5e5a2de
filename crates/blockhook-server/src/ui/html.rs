//! HTML building blocks: escaping, UTC time rendering and the page shell (`document`); the
//! signed-in parts (navigation, CSRF fields) are in `layout`.
//!
//! Pages are plain `format!` over values passed through [`Esc`], which escapes every character
//! that matters in text and in quoted attributes, so no page can forget to escape.

use std::fmt::{self, Write as _};

use axum::response::Html;

use blockhook_core::Timestamp;

/// Text escaped for HTML text and double-quoted attributes.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `ms` as ISO 8601 in UTC with milliseconds (`2026-11-28T22:01:32.123Z`).
pub fn iso(t: Timestamp) -> String {
    let ms = t.ms();
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// A `<time>` element: ISO UTC text (the embedded script shows it in the viewer's zone) and the
/// raw milliseconds in `title`.
pub fn time(t: Timestamp) -> String {
    let iso = iso(t);
    format!(
        r#"<time datetime="{iso}" title="{} ms">{iso}</time>"#,
        t.ms()
    )
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` as UTC.
pub fn parse_utc(raw: &str) -> Option<Timestamp> {
    let raw = raw.trim().trim_end_matches('Z');
    let (date, clock) = raw.split_once('T').unwrap_or((raw, "00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min) = (c.next()??, c.next()??);
    let s = c.next().flatten().unwrap_or(0);
    let valid = (1..=12).contains(&m)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&min)
        && (0..60).contains(&s);
    valid.then(|| {
        Timestamp::from_ms((days_from_civil(y, m, day) * 86_400 + h * 3600 + min * 60 + s) * 1000)
    })
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian, days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The page shell around `body`: `nav` (already HTML: empty when nobody is signed in), a flash
/// notice, the title as the heading.
pub fn document(title: &str, nav: &str, notice: Option<&str>, body: &str) -> Html<String> {
    let notice = notice
        .map(|n| format!(r#"<p class="notice" role="status">{}</p>"#, Esc(n)))
        .unwrap_or_default();
    Html(format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>{} · blockhook</title>
<link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/assets/style.css"><script src="/ui/assets/page.js" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a><header><a class="brand" href="/ui/">blockhook</a>{nav}</header>
<main id="main">{notice}<h1>{}</h1>
{body}</main></body></html>"##,
        Esc(title),
        Esc(title)
    ))
}

/// A duration in words: `3 days`, `1 day 12 hours`, `90 minutes` → `1 hour 30 minutes`, `45
/// seconds` (two largest units at most; `humantime` writes `3days`).
pub fn duration(d: std::time::Duration) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut left = d.as_secs();
    let mut parts = Vec::new();
    for (size, name) in UNITS {
        let n = left / size;
        left %= size;
        if n > 0 && parts.len() < 2 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if parts.is_empty() {
        return "0 seconds".to_owned();
    }
    parts.join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            Esc(r#"<a href="x">'&'</a>"#).to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn iso_round_trips_through_parse() {
        assert_eq!(iso(Timestamp::from_ms(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso(Timestamp::from_ms(1_764_367_292_123)),
            "2025-11-28T22:01:32.123Z"
        );
        assert_eq!(
            parse_utc("2025-11-28T22:01:32"),
            Some(Timestamp::from_ms(1_764_367_292_000))
        );
        assert_eq!(
            parse_utc("2024-02-29"),
            Some(Timestamp::from_ms(1_709_164_800_000))
        );
        assert_eq!(parse_utc("2024-13-01"), None);
        assert_eq!(parse_utc("nonsense"), None);
    }

    #[test]
    fn durations_in_words() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_secs(72 * 3600)), "3 days");
        assert_eq!(
            duration(Duration::from_secs(36 * 3600 + 59)),
            "1 day 12 hours"
        );
        assert_eq!(duration(Duration::from_secs(5400)), "1 hour 30 minutes");
        assert_eq!(duration(Duration::from_secs(1)), "1 second");
        assert_eq!(duration(Duration::ZERO), "0 seconds");
    }
}
