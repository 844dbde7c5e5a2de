//! Operator: merchants (list, create, suspend or reactivate), their API keys (issue, shown once;
//! revoke) and "act as merchant", which points the other pages at one merchant's data.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use blockhook_core::{MerchantId, MerchantStatus};

use crate::manage::merchants::{self as manage, CreateMerchant, MerchantWithKeys, UpdateMerchant};
use crate::state::AppState;
use crate::ui::csrf::{Csrf, NoFields};
use crate::ui::error::{UiError, UiResult};
use crate::ui::html::{Esc, time};
use crate::ui::layout::{button_form, csrf_field, page};
use crate::ui::session::{Principal, Ui};

fn merchant_id(raw: &str) -> Result<MerchantId, UiError> {
    MerchantId::parse(raw).map_err(|_| UiError::NotFound)
}

async fn render(ui: &Ui, state: &AppState, extra: &str) -> UiResult {
    ui.require_operator()?;
    let acting = match &ui.principal {
        Principal::Operator { acting_as } => acting_as.clone(),
        Principal::Merchant { .. } => None,
    };
    let merchants = manage::with_keys(state).await?;
    let mut rows = String::new();
    for MerchantWithKeys { merchant: m, keys } in &merchants {
        let mut key_list = String::new();
        for k in keys {
            let state_txt = match k.revoked_at {
                Some(t) => format!(r#"<span class="badge bad">revoked</span> {}"#, time(t)),
                None => button_form(
                    ui,
                    &format!("/ui/operator/merchants/{}/keys/{}/revoke", m.id, k.id),
                    "Revoke",
                    "danger small",
                ),
            };
            let _ = write!(
                key_list,
                r#"<li><span class="mono">{}…</span> {}</li>"#,
                Esc(&k.prefix),
                state_txt
            );
        }
        let (status_badge, toggle) = match m.status {
            MerchantStatus::Active => (
                r#"<span class="badge ok">active</span>"#,
                ("suspended", "Suspend"),
            ),
            MerchantStatus::Suspended => (
                r#"<span class="badge bad">suspended</span>"#,
                ("active", "Reactivate"),
            ),
        };
        let act = if acting.as_ref() == Some(&m.id) {
            r#"<span class="badge wait">acting as</span>"#.to_owned()
        } else {
            format!(
                r#"<form method="post" action="/ui/operator/act" class="inline">{}<input type="hidden" name="merchant" value="{}"><button type="submit" class="primary">Act as</button></form>"#,
                csrf_field(ui),
                m.id
            )
        };
        let _ = write!(
            rows,
            r#"<tr><td><strong>{name}</strong><div class="hint mono">{id}</div></td><td>{status_badge}</td><td>{created}</td>
<td><ul class="keys">{key_list}</ul>{issue}</td><td class="actions">{act}{toggle}</td></tr>"#,
            name = Esc(&m.name),
            id = m.id,
            created = time(m.created_at),
            issue = button_form(
                ui,
                &format!("/ui/operator/merchants/{}/keys", m.id),
                "Issue API key",
                "small"
            ),
            toggle = button_form(
                ui,
                &format!("/ui/operator/merchants/{}/status?to={}", m.id, toggle.0),
                toggle.1,
                "small"
            ),
        );
    }
    let stop = if acting.is_some() {
        format!(
            r#"<form method="post" action="/ui/operator/act" class="inline">{}<input type="hidden" name="merchant" value=""><button type="submit">Stop acting as a merchant</button></form>"#,
            csrf_field(ui)
        )
    } else {
        "<p class=\"hint\">Pick a merchant with <em>Act as</em> to see its endpoints, events and health.</p>".to_owned()
    };
    let table = if merchants.is_empty() {
        "<p>No merchants yet.</p>".to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table><thead><tr><th scope="col">Merchant</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">API keys</th><th scope="col">Actions</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let body = format!(
        r#"{extra}{stop}<h2>Merchants</h2>{table}
<h2>Create a merchant</h2><form method="post" action="/ui/operator/merchants" class="card">{csrf}
<label for="m-name">Name</label><input id="m-name" name="name" required>
<label for="m-id">Id <span class="hint">(optional, e.g. mch_acme)</span></label><input id="m-id" name="id">
<button type="submit" class="primary">Create merchant</button></form>"#,
        csrf = csrf_field(ui)
    );
    Ok(page("Operator", Some(ui), ui.flash.as_deref(), &body).into_response())
}

/// `GET /ui/operator`.
pub async fn show(ui: Ui, State(state): State<AppState>) -> UiResult {
    render(&ui, &state, "").await
}

/// The create-merchant form.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    name: String,
    #[serde(default)]
    id: String,
}

/// `POST /ui/operator/merchants`.
pub async fn create_merchant(
    ui: Ui,
    State(state): State<AppState>,
    Csrf(Form(input)): Csrf<Form<CreateForm>>,
) -> UiResult {
    ui.require_operator()?;
    let input = CreateMerchant {
        name: input.name,
        id: Some(input.id.trim().to_owned()).filter(|s| !s.is_empty()),
    };
    let m = manage::create(&state, input).await?;
    ui.flash(format!("Merchant {} created.", m.id));
    Ok(Redirect::to("/ui/operator").into_response())
}

/// `?to=` of the status action.
#[derive(Debug, Deserialize)]
pub struct StatusTo {
    to: String,
}

/// `POST /ui/operator/merchants/{id}/status?to=active|suspended`.
pub async fn set_status(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(to): axum::extract::Query<StatusTo>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    ui.require_operator()?;
    let m =
        manage::set_status(&state, &merchant_id(&id)?, UpdateMerchant { status: to.to }).await?;
    ui.flash(format!("Merchant {} is now {}.", m.id, m.status));
    Ok(Redirect::to("/ui/operator").into_response())
}

/// `POST /ui/operator/merchants/{id}/keys`: issues a key and shows it this once.
pub async fn issue_key(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    ui.require_operator()?;
    let merchant = merchant_id(&id)?;
    manage::get(&state, &merchant).await?;
    let issued = manage::issue_key(&state, &merchant).await?;
    let extra = format!(
        r#"<section class="card reveal" aria-live="polite"><h2>New API key for {}</h2><p><code class="secret" id="issued-key">{}</code></p><p class="hint">Copy it now: it is shown only this once and stored only as a hash.</p></section>"#,
        merchant,
        Esc(&issued.key)
    );
    render(&ui, &state, &extra).await
}

/// `POST /ui/operator/merchants/{id}/keys/{key}/revoke`.
pub async fn revoke_key(
    ui: Ui,
    State(state): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    ui.require_operator()?;
    manage::revoke_key(&state, &merchant_id(&id)?, &key).await?;
    ui.flash("Key revoked.");
    Ok(Redirect::to("/ui/operator").into_response())
}

/// The act-as form: a merchant id, or empty to stop.
#[derive(Debug, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    merchant: String,
}

/// `POST /ui/operator/act`.
pub async fn act_as(
    ui: Ui,
    State(state): State<AppState>,
    Csrf(Form(input)): Csrf<Form<ActForm>>,
) -> UiResult {
    ui.require_operator()?;
    if input.merchant.is_empty() {
        ui.act_as(None)?;
        ui.flash("No longer acting as a merchant.");
        return Ok(Redirect::to("/ui/operator").into_response());
    }
    let id = merchant_id(&input.merchant)?;
    let m = manage::get(&state, &id).await?;
    ui.act_as(Some(id))?;
    ui.flash(format!("Acting as {} ({}).", m.name, m.id));
    Ok(Redirect::to("/ui/endpoints").into_response())
}
