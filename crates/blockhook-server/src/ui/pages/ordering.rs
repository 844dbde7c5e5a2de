//! Ordered delivery on an endpoint's page (docs/ordering.md): the ordering fields of the create
//! and edit forms, the facts line, and the held keys with a release button each.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use blockhook_core::{Endpoint, OnFinalFailure, Ordering, OrderingMode};

use super::endpoint_id;
use crate::manage::ordering::{self as manage, OrderingInput};
use crate::state::AppState;
use crate::ui::csrf::Csrf;
use crate::ui::error::{UiError, UiResult};
use crate::ui::html::{Esc, time};
use crate::ui::layout::csrf_field;
use crate::ui::session::Ui;

/// The ordering fields of the create and edit forms (flattened into the endpoint form).
#[derive(Debug, Default, Deserialize)]
pub struct OrderingFields {
    #[serde(default)]
    ordering_mode: String,
    #[serde(default)]
    ordering_key_field: String,
    #[serde(default)]
    ordering_on_final_failure: String,
}

impl OrderingFields {
    /// The setting as the form gives it: every field, so the edit form replaces the setting.
    pub fn to_input(&self) -> OrderingInput {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        OrderingInput {
            mode: Some(text(&self.ordering_mode).unwrap_or_else(|| "none".to_owned())),
            key_field: Some(text(&self.ordering_key_field)),
            on_final_failure: Some(
                text(&self.ordering_on_final_failure).unwrap_or_else(|| "continue".to_owned()),
            ),
        }
    }
}

fn select(name: &str, id: &str, options: &[(&str, &str)], current: &str) -> String {
    let mut out = format!(r#"<select name="{name}" id="{id}">"#);
    for (value, label) in options {
        let sel = if *value == current { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{value}"{sel}>{label}</option>"#);
    }
    out.push_str("</select>");
    out
}

/// The form fields, prefilled from `ep` when editing.
pub fn form_fields(ep: Option<&Endpoint>, prefix: &str) -> String {
    let o = ep.map(|e| e.ordering.clone()).unwrap_or_default();
    let mode = select(
        "ordering_mode",
        &format!("{prefix}ordering-mode"),
        &[
            ("none", "none (independent deliveries)"),
            ("per_key", "per key (publish order per ordering key)"),
        ],
        if o.per_key() { "per_key" } else { "none" },
    );
    let on_failure = select(
        "ordering_on_final_failure",
        &format!("{prefix}ordering-failure"),
        &[
            ("continue", "continue with the next delivery"),
            ("hold", "hold the key until released"),
        ],
        match o.on_final_failure {
            OnFinalFailure::Continue => "continue",
            OnFinalFailure::Hold => "hold",
        },
    );
    format!(
        r#"<label for="{prefix}ordering-mode">Ordering</label>{mode}
<label for="{prefix}ordering-key-field">Ordering key field <span class="hint">(top-level payload field used when an event has no ordering key; empty = none)</span></label>
<input id="{prefix}ordering-key-field" name="ordering_key_field" value="{}" placeholder="orderNo">
<label for="{prefix}ordering-failure">When a key's delivery fails for good</label>{on_failure}"#,
        Esc(o.key_field.as_deref().unwrap_or(""))
    )
}

/// The setting in words, for the endpoint's facts.
pub fn describe(o: &Ordering) -> String {
    match o.mode {
        OrderingMode::None => "none".to_owned(),
        OrderingMode::PerKey => {
            let field = o
                .key_field
                .as_deref()
                .map_or_else(String::new, |f| format!(", key field {}", Esc(f)));
            let failure = match o.on_final_failure {
                OnFinalFailure::Continue => "continue",
                OnFinalFailure::Hold => "hold",
            };
            format!("per key{field}, on final failure: {failure}")
        }
    }
}

/// The held keys of an ordered endpoint, each with a release button (nothing for an endpoint
/// that never ordered).
pub async fn held_section(ui: &Ui, state: &AppState, ep: &Endpoint) -> Result<String, UiError> {
    let held = manage::held(state, &ep.merchant_id, &ep.id).await?;
    if held.is_empty() {
        return Ok(if ep.ordering.per_key() {
            r#"<h2>Held keys</h2><p id="held-keys">No key is held.</p>"#.to_owned()
        } else {
            String::new()
        });
    }
    let mut rows = String::new();
    for h in &held {
        let _ = write!(
            rows,
            r#"<tr><td class="mono">{key}</td><td class="mono">{delivery}</td><td>{since}</td><td>{waiting}</td><td><form method="post" action="/ui/endpoints/{id}/ordering/release" class="inline">{csrf}<input type="hidden" name="key" value="{key}"><button type="submit">Release</button></form></td></tr>"#,
            key = Esc(&h.key),
            delivery = Esc(&h.delivery_id),
            since = time(blockhook_core::Timestamp::from_ms(h.since)),
            waiting = h.waiting,
            id = ep.id,
            csrf = csrf_field(ui),
        );
    }
    Ok(format!(
        r#"<h2>Held keys</h2><p class="hint">These keys wait after a delivery failed for good. Releasing one lets its next delivery proceed; the failed one stays failed (resend its event to deliver it again, after the key's other deliveries).</p><div class="scroll"><table id="held-keys"><thead><tr><th scope="col">Key</th><th scope="col">Failed delivery</th><th scope="col">Since</th><th scope="col">Waiting</th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table></div>"#
    ))
}

/// The release form: which key.
#[derive(Debug, Deserialize)]
pub struct ReleaseForm {
    #[serde(default)]
    key: String,
}

/// `POST /ui/endpoints/{id}/ordering/release`: releases one held key.
pub async fn release(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Csrf(Form(input)): Csrf<Form<ReleaseForm>>,
) -> UiResult {
    let merchant = ui.merchant()?;
    let id = endpoint_id(&id)?;
    manage::release(&state, merchant, &id, &input.key).await?;
    ui.flash("Key released: its next delivery proceeds.");
    Ok(Redirect::to(&format!("/ui/endpoints/{id}")).into_response())
}
