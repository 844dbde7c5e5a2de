//! One module per dashboard page.

pub mod debugger;
pub mod endpoints;
pub mod events;
pub mod health;
pub mod login;
pub mod operator;
pub mod ordering;

use std::fmt::Write as _;
use std::time::Duration;

use blockhook_core::{EndpointHealth, EndpointId, EventId};

use super::error::UiError;
use super::html::Esc;

/// One day.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// An endpoint id from the path; anything unparsable is simply not found.
pub fn endpoint_id(raw: &str) -> Result<EndpointId, UiError> {
    EndpointId::parse(raw).map_err(|_| UiError::NotFound)
}

/// An event id from the path; anything unparsable is simply not found.
pub fn event_id(raw: &str) -> Result<EventId, UiError> {
    EventId::parse(raw).map_err(|_| UiError::NotFound)
}

/// `97.5% (39/40)`, or a dash when there were no attempts.
pub fn success_rate(h: &EndpointHealth) -> String {
    if h.attempts == 0 {
        return "—".to_owned();
    }
    #[allow(clippy::cast_precision_loss)]
    let pct = h.succeeded as f64 * 100.0 / h.attempts as f64;
    format!("{pct:.1}% ({}/{})", h.succeeded, h.attempts)
}

/// Header pairs as a definition list.
pub fn header_list(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "<p class=\"hint\">none</p>".to_owned();
    }
    let mut out = String::from("<dl class=\"headers\">");
    for (k, v) in pairs {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", Esc(k), Esc(v));
    }
    out.push_str("</dl>");
    out
}

/// A body excerpt as text (lossy UTF-8, at most 4 KiB shown).
pub fn body_excerpt(bytes: &[u8], truncated: bool) -> String {
    if bytes.is_empty() {
        return "<p class=\"hint\">empty body</p>".to_owned();
    }
    let cut = bytes.len().min(4096);
    let text = String::from_utf8_lossy(&bytes[..cut]);
    let more = if truncated || cut < bytes.len() {
        "\n…"
    } else {
        ""
    };
    format!("<pre class=\"body\">{}{more}</pre>", Esc(&text))
}

/// A button that copies the text (or value) of the element `target` (a CSS selector). Hidden
/// until the page script runs, since only it can copy.
pub fn copy_button(target: &str, label: &str) -> String {
    format!(
        r#"<button type="button" class="copy" data-copy="{}" hidden>{}</button>"#,
        Esc(target),
        Esc(label)
    )
}

/// A delivery's state (`succeeded`, `failed`, `pending`, `in_flight`) as a coloured badge.
pub fn delivery_badge(state: &str) -> String {
    let class = match state {
        "succeeded" => "ok",
        "failed" => "bad",
        _ => "wait",
    };
    format!(r#"<span class="badge {class}">{}</span>"#, Esc(state))
}
