//! Times on the command line: flags take Unix milliseconds or a duration ago (`6h`), tables
//! print ISO-8601 UTC. The server speaks Unix milliseconds; `--json` keeps them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

/// A time flag (`--since`, `--until`): Unix ms, or `<n>s|m|h|d` before now.
pub fn parse_ms(flag: &str, raw: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    let (n, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .with_context(|| format!("{flag} {raw:?}: expected Unix ms or a duration such as 6h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        "d" => n.saturating_mul(86_400),
        _ => bail!("{flag} {raw:?}: unit must be s, m, h or d"),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let then = now.saturating_sub(Duration::from_secs(secs));
    Ok(i64::try_from(then.as_millis())?)
}

/// Unix ms as ISO-8601 UTC with milliseconds (`2026-12-05T21:23:21.123Z`); `None` for a time
/// before 1970 or too far ahead to print.
pub fn iso8601(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    // RFC 3339 has four-digit years: 9999-12-31T23:59:59.999Z is the last printable time.
    if ms > 253_402_300_799_999 {
        return None;
    }
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(humantime::format_rfc3339_millis(at).to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_before_now_and_numbers_are_ms() {
        assert_eq!(
            parse_ms("--since", "1743060268000").unwrap(),
            1_743_060_268_000
        );
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let six_hours_ago = parse_ms("--since", "6h").unwrap();
        assert!((now - 6 * 3_600_000 - six_hours_ago).abs() < 60_000);
        let err = parse_ms("--since", "6w").unwrap_err().to_string();
        assert!(
            err.contains("--since") && err.contains("s, m, h or d"),
            "{err}"
        );
        assert!(parse_ms("--until", "yesterday").is_err());
        assert!(parse_ms("--since", "h").is_err());
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(
            iso8601(1_743_060_268_000).as_deref(),
            Some("2025-03-27T07:24:28.000Z")
        );
        assert_eq!(iso8601(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            iso8601(951_782_400_123).as_deref(),
            Some("2000-02-29T00:00:00.123Z")
        );
        assert_eq!(
            iso8601(1_709_251_199_999).as_deref(),
            Some("2024-02-29T23:59:59.999Z")
        );
        assert_eq!(iso8601(-1), None);
        assert_eq!(iso8601(i64::MAX), None);
    }
}
