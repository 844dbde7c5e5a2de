//! The signature debugger page (`/ui/debugger`): paste a body and the received signature
//! headers (BlockATM or Standard Webhooks), choose one of your endpoints (its secret is used
//! server-side and never rendered) or paste a secret, and see each mode's canonical message,
//! the expected and received signatures, the verdict and the usual mistakes with their fixes
//! (`blockhook_receiver::explain`, the same code as `blockhook verify --explain`).
//!
//! `?event=…&attempt=…` pre-fills the form from a recorded attempt (the "Debug this signature"
//! link of an event's page). Nothing pasted is stored or logged: the form is read, explained
//! and rendered in one request, the pasted secret is never echoed back, and the answer is
//! `Cache-Control: no-store` like every dashboard page.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;

use blockhook_core::{AttemptId, Endpoint};
use blockhook_receiver::explain::{DebugMode, Explanation};

use super::{endpoint_id, event_id};
use crate::ApiError;
use crate::manage::debugger::{self as manage, DebugInput, SecretSource};
use crate::manage::endpoints as manage_endpoints;
use crate::state::AppState;
use crate::ui::csrf::Csrf;
use crate::ui::error::{UiError, UiResult};
use crate::ui::html::Esc;
use crate::ui::layout::{csrf_field, page};
use crate::ui::session::Ui;

const TITLE: &str = "Signature debugger";

/// `?event=&attempt=`: the attempt to pre-fill from.
#[derive(Debug, Default, Deserialize)]
pub struct FromAttempt {
    #[serde(default)]
    event: String,
    #[serde(default)]
    attempt: String,
}

/// The debugger form: every field is text.
#[derive(Debug, Default, Deserialize)]
pub struct DebugForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    request_time: String,
    #[serde(default)]
    signature_v2: String,
    #[serde(default)]
    webhook_id: String,
    #[serde(default)]
    webhook_timestamp: String,
    #[serde(default)]
    webhook_signature: String,
    /// An endpoint id, or empty for the pasted secret.
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    secret: String,
    /// `sorted`, `raw`, `standard`, or empty for the endpoint's mode.
    #[serde(default)]
    receiver_mode: String,
}

impl DebugForm {
    fn input(&self) -> Result<DebugInput, UiError> {
        let receiver_mode = match self.receiver_mode.trim() {
            "" => None,
            m => Some(DebugMode::parse(m).ok_or_else(|| {
                UiError::Invalid("receiver mode: choose sorted, raw or standard".into())
            })?),
        };
        Ok(DebugInput {
            body: normalise_newlines(&self.body).into_bytes(),
            request_time: self.request_time.clone(),
            signature_v2: self.signature_v2.clone(),
            webhook_id: self.webhook_id.clone(),
            webhook_timestamp: self.webhook_timestamp.clone(),
            webhook_signature: self.webhook_signature.clone(),
            receiver_mode,
        })
    }
}

/// A `<textarea>` always submits its line breaks as CRLF (HTML's form encoding); a webhook
/// body's line breaks are LF, so CRLF is turned back into LF before anything is signed.
fn normalise_newlines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// `GET /ui/debugger`: the empty form, or pre-filled from `?event=&attempt=`.
pub async fn show(
    ui: Ui,
    State(state): State<AppState>,
    Query(from): Query<FromAttempt>,
) -> UiResult {
    let merchant = ui.merchant()?;
    let endpoints = manage_endpoints::newest(&state, merchant).await?;
    let mut form = DebugForm::default();
    if !from.event.is_empty() || !from.attempt.is_empty() {
        let event = event_id(&from.event)?;
        let attempt = AttemptId::parse(&from.attempt).map_err(|_| UiError::NotFound)?;
        let prefill = manage::prefill(&state, merchant, &event, &attempt).await?;
        let i = prefill.input;
        form = DebugForm {
            body: String::from_utf8_lossy(&i.body).into_owned(),
            request_time: i.request_time,
            signature_v2: i.signature_v2,
            webhook_id: i.webhook_id,
            webhook_timestamp: i.webhook_timestamp,
            webhook_signature: i.webhook_signature,
            endpoint: prefill.endpoint_id.to_string(),
            secret: String::new(),
            receiver_mode: String::new(),
        };
    }
    let body = render(&ui, &endpoints, &form, None, None);
    Ok(page(TITLE, Some(&ui), ui.flash.as_deref(), &body).into_response())
}

/// `POST /ui/debugger`: explains the posted inputs and shows the form again with the result.
pub async fn explain(
    ui: Ui,
    State(state): State<AppState>,
    Csrf(Form(form)): Csrf<Form<DebugForm>>,
) -> UiResult {
    let merchant = ui.merchant()?;
    let endpoints = manage_endpoints::newest(&state, merchant).await?;
    let outcome = match form.input() {
        Ok(input) => {
            let source = match form.endpoint.trim() {
                "" => SecretSource::Pasted(form.secret.trim().to_owned()),
                raw => SecretSource::Endpoint(endpoint_id(raw)?),
            };
            match manage::explain(&state, merchant, &source, &input).await {
                Ok(d) => Ok(d),
                // Bad input is shown above the form, which keeps what was typed.
                Err(ApiError::Invalid { field, detail }) => Err(match field {
                    Some(f) => format!("{f}: {detail}"),
                    None => detail,
                }),
                Err(e) => return Err(e.into()),
            }
        }
        Err(UiError::Invalid(why)) => Err(why),
        Err(e) => return Err(e),
    };
    let body = match outcome {
        Ok(d) => render(
            &ui,
            &endpoints,
            &form,
            Some((&d.explanation, d.expected_mode)),
            None,
        ),
        Err(why) => render(&ui, &endpoints, &form, None, Some(&why)),
    };
    Ok(page(TITLE, Some(&ui), None, &body).into_response())
}

fn endpoint_options(endpoints: &[Endpoint], current: &str) -> String {
    let mut out = String::from(r#"<option value="">none: use the pasted secret</option>"#);
    for ep in endpoints {
        let name = ep
            .label
            .as_ref()
            .map_or_else(|| ep.url.as_str().to_owned(), |l| l.as_str().to_owned());
        let id = ep.id.to_string();
        let sel = if id == current { " selected" } else { "" };
        let _ = write!(
            out,
            r#"<option value="{id}"{sel}>{} ({})</option>"#,
            Esc(&name),
            ep.signing_mode.as_str()
        );
    }
    out
}

fn mode_options(current: &str) -> String {
    let mut out = String::new();
    for (value, label) in [
        (
            "",
            "the endpoint's signing mode (any, with a pasted secret)",
        ),
        ("sorted", "sorted"),
        ("raw", "raw"),
        ("standard", "standard (Standard Webhooks)"),
    ] {
        let sel = if value == current { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{value}"{sel}>{label}</option>"#);
    }
    out
}

fn render(
    ui: &Ui,
    endpoints: &[Endpoint],
    form: &DebugForm,
    result: Option<(&Explanation, Option<DebugMode>)>,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| {
            format!(
                r#"<p class="error" role="alert" id="debug-error">{}</p>"#,
                Esc(e)
            )
        })
        .unwrap_or_default();
    let result = result
        .map(|(e, expected)| render_result(e, expected))
        .unwrap_or_default();
    let input = |name: &str, id: &str, label: &str, value: &str, hint: &str| {
        format!(
            r#"<label for="{id}">{label} <span class="hint">{hint}</span></label><input id="{id}" name="{name}" value="{}" autocomplete="off" spellcheck="false" class="mono">"#,
            Esc(value)
        )
    };
    format!(
        r#"<p class="hint">Paste what your receiver got and see why its signature does or does not match. Nothing you paste is stored or logged, and this page is never cached; an endpoint's secret is used on the server and never shown.</p>
{error}{result}
<form method="post" action="/ui/debugger" class="card" id="debug-form">{csrf}
<label for="debug-body">Body <span class="hint">(exactly as received; line breaks are taken as LF)</span></label>
<textarea id="debug-body" name="body" rows="10" spellcheck="false" class="mono">{body}</textarea>
<fieldset><legend>BlockATM headers (modes sorted and raw)</legend>
{time}{sig}
</fieldset>
<fieldset><legend>Standard Webhooks headers (mode standard)</legend>
{wid}{wts}{wsig}
</fieldset>
<fieldset><legend>Secret</legend>
<label for="debug-endpoint">Endpoint <span class="hint">(its secret is used server-side)</span></label>
<select id="debug-endpoint" name="endpoint">{endpoints}</select>
<label for="debug-secret">Or paste a secret <span class="hint">(as your receiver uses it; never shown again)</span></label>
<input id="debug-secret" name="secret" type="password" autocomplete="off" value="" class="mono">
<label for="debug-mode">Mode your receiver verifies</label>
<select id="debug-mode" name="receiver_mode">{modes}</select>
</fieldset>
<button type="submit" class="primary">Explain</button></form>"#,
        csrf = csrf_field(ui),
        body = Esc(&form.body),
        time = input(
            "request_time",
            "debug-time",
            "BlockATM-Request-Time",
            &form.request_time,
            "(Unix milliseconds)"
        ),
        sig = input(
            "signature_v2",
            "debug-sig",
            "BlockATM-Signature-V2",
            &form.signature_v2,
            "(64 hex characters)"
        ),
        wid = input(
            "webhook_id",
            "debug-wid",
            "webhook-id",
            &form.webhook_id,
            ""
        ),
        wts = input(
            "webhook_timestamp",
            "debug-wts",
            "webhook-timestamp",
            &form.webhook_timestamp,
            "(Unix seconds)"
        ),
        wsig = input(
            "webhook_signature",
            "debug-wsig",
            "webhook-signature",
            &form.webhook_signature,
            "(v1,&lt;base64&gt; entries)"
        ),
        endpoints = endpoint_options(endpoints, form.endpoint.trim()),
        modes = mode_options(form.receiver_mode.trim()),
    )
}

fn render_result(e: &Explanation, expected: Option<DebugMode>) -> String {
    let (class, badge) = if e.is_match() && !e.mistakes.iter().any(|m| m.code() == "wrong-mode") {
        ("ok", "valid")
    } else {
        ("bad", "not valid")
    };
    let checked = expected.map_or_else(String::new, |m| {
        format!(r#"<p class="hint">Checked against mode {m}.</p>"#)
    });
    let mut mistakes = String::new();
    if e.mistakes.is_empty() {
        mistakes.push_str(r#"<p id="no-mistakes">No usual mistake found.</p>"#);
    } else {
        mistakes.push_str(r#"<ul id="mistakes">"#);
        for m in &e.mistakes {
            let _ = write!(
                mistakes,
                r#"<li class="mistake" data-code="{code}"><strong>{what}</strong><br><span class="fix">Fix: {fix}</span></li>"#,
                code = m.code(),
                what = Esc(&m.describe()),
                fix = Esc(&m.fix()),
            );
        }
        mistakes.push_str("</ul>");
    }
    let mut modes = String::new();
    for r in &e.modes {
        let message = match &r.message {
            Ok(m) => format!(r#"<pre class="body message">{}</pre>"#, Esc(m)),
            Err(why) => format!(r#"<p class="hint">Cannot be formed: {}</p>"#, Esc(why)),
        };
        let (mclass, mtext) = if r.matches {
            ("ok", "matches")
        } else {
            ("bad", "does not match")
        };
        let _ = write!(
            modes,
            r#"<section class="card mode" id="mode-{mode}"><h3>Mode {mode} <span class="badge {mclass}">{mtext}</span></h3><h4>Signed message</h4>{message}<dl class="facts"><dt>Expected</dt><dd class="mono expected">{exp}</dd><dt>Received</dt><dd class="mono received">{rec}</dd></dl></section>"#,
            mode = r.mode,
            exp = Esc(r.expected.as_deref().unwrap_or("—")),
            rec = Esc(r.received.as_deref().unwrap_or("—")),
        );
    }
    format!(
        r#"<section id="result" aria-live="polite"><h2>Result</h2><p id="verdict"><span class="badge {class}">{badge}</span> {verdict}</p>{checked}<h3>Mistakes</h3>{mistakes}{modes}</section>"#,
        verdict = Esc(&e.verdict()),
    )
}

/// The link to the debugger pre-filled from one attempt.
pub fn attempt_link(event: &blockhook_core::EventId, attempt: &AttemptId) -> String {
    format!(
        r#"<a class="debug-link" href="/ui/debugger?event={event}&amp;attempt={attempt}">Debug this signature</a>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textarea_line_breaks_become_lf() {
        assert_eq!(
            normalise_newlines("{\r\n  \"a\": 1\r\n}"),
            "{\n  \"a\": 1\n}"
        );
        assert_eq!(normalise_newlines("a\nb"), "a\nb");
    }

    #[test]
    fn an_unknown_mode_is_refused() {
        let form = DebugForm {
            receiver_mode: "json".into(),
            ..DebugForm::default()
        };
        assert!(matches!(form.input(), Err(UiError::Invalid(_))));
    }
}
