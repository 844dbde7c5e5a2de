//! Events: the search (by event id, a searchable payload field's value, endpoint, delivery
//! state, type and time; newest first, Previous / Next pages, the number of matches), and
//! one event's page: its payload, each delivery with its attempts, and resend.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use serde_json::Value;

use blockhook_core::{
    AttemptRecord, Cursor, Delivery, DeliveryId, EndpointId, Event, EventQuery, EventType,
};

use super::{body_excerpt, copy_button, delivery_badge, endpoint_id, event_id, header_list};
use crate::ApiError;
use crate::manage::endpoints as manage_endpoints;
use crate::manage::events::{self as manage, DeliveryDetail, ResendRequest};
use crate::state::AppState;
use crate::ui::csrf::{Csrf, NoFields};
use crate::ui::error::{UiError, UiResult};
use crate::ui::html::{Esc, duration, iso, parse_utc, time};
use crate::ui::layout::{button_form, csrf_field, page};
use crate::ui::session::Ui;

const PAGE: u32 = 25;

/// Payload fields worth a column when present.
const FIELDS: [&str; 4] = ["orderNo", "bizOrderNo", "custNo", "status"];

/// The search form (all optional). Parameter names are short, as they show in the address bar.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// An event id.
    #[serde(default)]
    id: String,
    /// Which searchable field `value` is of (the first configured one when absent).
    #[serde(default)]
    field: String,
    /// A value of `field` (an order number, by default).
    #[serde(default)]
    value: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    before: String,
}

impl Filter {
    /// The same checks as the API's search (`manage::events::query`).
    async fn query(&self, state: &AppState, ui: &Ui) -> Result<EventQuery, UiError> {
        let time = |raw: &str, name: &str| match raw.trim() {
            "" => Ok(None),
            t => parse_utc(t)
                .map(|t| Some(t.ms()))
                .ok_or_else(|| UiError::Invalid(format!("{name}: use YYYY-MM-DDTHH:MM (UTC)"))),
        };
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let value = some(&self.value);
        let field = value.as_ref().map(|_| {
            some(&self.field).unwrap_or_else(|| {
                state
                    .settings
                    .search
                    .fields
                    .first()
                    .cloned()
                    .unwrap_or_default()
            })
        });
        let filter = manage::EventFilterQuery {
            event_id: some(&self.id),
            field,
            value,
            endpoint_id: some(&self.endpoint),
            event_type: some(&self.event_type),
            state: some(&self.state),
            since: time(&self.since, "from")?,
            until: time(&self.until, "until")?,
            after: some(&self.after),
            before: some(&self.before),
            limit: Some(PAGE),
            ..Default::default()
        };
        Ok(manage::query(state, ui.merchant()?, &filter).await?)
    }

    /// The address of this search at another page: `("after", next)` or `("before", prev)`.
    fn page_href(&self, (key, cursor): (&str, &Cursor)) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("id", &self.id),
            ("field", &self.field),
            ("value", &self.value),
            ("endpoint", &self.endpoint),
            ("type", &self.event_type),
            ("state", &self.state),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair(key, &cursor.0);
        format!("/ui/events?{}", q.finish())
    }
}

/// The interesting payload fields of an event, as `(name, value)`; looks at the top level and
/// inside a `data` object.
fn key_fields(ev: &Event) -> Vec<(&'static str, String)> {
    let Some(Ok(v)) = ev
        .payload
        .as_ref()
        .map(|p| serde_json::from_slice::<Value>(p.bytes()))
    else {
        return Vec::new();
    };
    FIELDS
        .iter()
        .filter_map(|&name| {
            let found = v
                .get(name)
                .or_else(|| v.get("data").and_then(|d| d.get(name)))?;
            let text = match found {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some((name, text))
        })
        .collect()
}

/// Endpoint names of a merchant (label or URL), to show next to deliveries.
async fn endpoint_names(ui: &Ui, state: &AppState) -> Result<HashMap<EndpointId, String>, UiError> {
    Ok(manage_endpoints::newest(state, ui.merchant()?)
        .await?
        .into_iter()
        .map(|e| {
            let name = e
                .label
                .map_or_else(|| e.url.as_str().to_owned(), |l| l.as_str().to_owned());
            (e.id, name)
        })
        .collect())
}

fn endpoint_name(names: &HashMap<EndpointId, String>, id: &EndpointId) -> String {
    names
        .get(id)
        .cloned()
        .unwrap_or_else(|| format!("{id} (deleted)"))
}

fn select(values: &[(String, String)], current: &str, any: Option<&str>) -> String {
    let mut out = any
        .map(|a| format!(r#"<option value="">{a}</option>"#))
        .unwrap_or_default();
    for (v, label) in values {
        let sel = if v == current { " selected" } else { "" };
        let _ = write!(
            out,
            r#"<option value="{}"{sel}>{}</option>"#,
            Esc(v),
            Esc(label)
        );
    }
    out
}

/// `GET /ui/events`: the search form and one page of matches.
pub async fn list(ui: Ui, State(state): State<AppState>, Query(filter): Query<Filter>) -> UiResult {
    let merchant = ui.merchant()?;
    let query = filter.query(&state, &ui).await?;
    let page_ = manage::overview(&state, merchant, &query).await?;
    let names = endpoint_names(&ui, &state).await?;
    let mut rows = String::new();
    for manage::EventOverview {
        event: ev,
        deliveries,
    } in &page_.events
    {
        let fields = key_fields(ev)
            .into_iter()
            .map(|(k, v)| {
                format!(
                    r#"<span class="kv"><span class="k">{k}</span> {}</span>"#,
                    Esc(&v)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let states = deliveries
            .iter()
            .map(|d| {
                format!(
                    r#"<div>{} <span class="hint">{}</span></div>"#,
                    delivery_badge(d.state.as_str()),
                    Esc(&endpoint_name(&names, &d.endpoint_id))
                )
            })
            .collect::<String>();
        let _ = write!(
            rows,
            r#"<tr><td><a href="/ui/events/{id}">{when}</a></td><td>{ty}</td><td>{fields}</td><td>{states}</td></tr>"#,
            id = ev.id,
            when = time(ev.created_at),
            ty = Esc(ev.event_type.as_str()),
            states = if states.is_empty() {
                "<span class=\"hint\">no endpoint</span>".into()
            } else {
                states
            },
        );
    }
    let total = if page_.total > manage::TOTAL_CAP {
        format!("More than {} matches", manage::TOTAL_CAP)
    } else if page_.total == 1 {
        "1 match".to_owned()
    } else {
        format!("{} matches", page_.total)
    };
    let table = if page_.events.is_empty() {
        "<p class=\"empty\">No events match this search.</p>".to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table class="stack"><thead><tr><th scope="col">Created</th><th scope="col">Type</th><th scope="col">Details</th><th scope="col">Deliveries</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let link = |c: Option<&Cursor>, key: &str, rel: &str, text: &str| {
        c.map(|c| {
            format!(
                r#"<a class="button" href="{}" rel="{rel}">{text}</a>"#,
                Esc(&filter.page_href((key, c)))
            )
        })
        .unwrap_or_default()
    };
    let pager = format!(
        r#"<nav class="pager" aria-label="Pages">{} {}</nav>"#,
        link(page_.prev.as_ref(), "before", "prev", "← Previous"),
        link(page_.next.as_ref(), "after", "next", "Next →"),
    );
    let types: Vec<(String, String)> = EventType::BUILT_IN
        .iter()
        .map(|t| ((*t).to_owned(), (*t).to_owned()))
        .collect();
    let states: Vec<(String, String)> = ["pending", "in_flight", "succeeded", "failed"]
        .iter()
        .map(|t| ((*t).to_owned(), (*t).to_owned()))
        .collect();
    let fields: Vec<(String, String)> = state
        .settings
        .search
        .fields
        .iter()
        .map(|f| (f.clone(), f.clone()))
        .collect();
    let mut endpoints: Vec<(String, String)> = names
        .iter()
        .map(|(id, name)| (id.to_string(), name.clone()))
        .collect();
    endpoints.sort_by(|a, b| a.1.cmp(&b.1));
    let body = format!(
        r#"<form method="get" action="/ui/events" class="filters" role="search" aria-label="Search events">
<div><label for="f-field">Payload field</label><select id="f-field" name="field">{fields}</select></div>
<div><label for="f-value">Value</label><input id="f-value" name="value" type="search" value="{value}" maxlength="256" placeholder="e.g. an order number"></div>
<div><label for="f-id">Event id</label><input id="f-id" name="id" type="search" value="{id}" placeholder="evt_…"></div>
<div><label for="f-endpoint">Endpoint</label><select id="f-endpoint" name="endpoint">{endpoints}</select></div>
<div><label for="f-type">Type</label><select id="f-type" name="type">{types}</select></div>
<div><label for="f-state">Delivery state</label><select id="f-state" name="state">{states}</select></div>
<div><label for="f-since">From (UTC)</label><input id="f-since" name="since" type="datetime-local" value="{since}"></div>
<div><label for="f-until">Until (UTC)</label><input id="f-until" name="until" type="datetime-local" value="{until}"></div>
<div><button type="submit">Search</button> <a href="/ui/events">Reset</a></div></form>
<p class="total" role="status">{total}</p>
{table}{pager}"#,
        fields = select(&fields, &filter.field, None),
        value = Esc(&filter.value),
        id = Esc(&filter.id),
        endpoints = select(&endpoints, &filter.endpoint, Some("any endpoint")),
        types = select(&types, &filter.event_type, Some("any type")),
        states = select(&states, &filter.state, Some("any state")),
        since = Esc(&filter.since),
        until = Esc(&filter.until),
    );
    Ok(page("Events", Some(&ui), ui.flash.as_deref(), &body).into_response())
}

/// A shell word: single-quoted, so every byte (newlines too) reaches the program as it is.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Payloads up to this size are written into each attempt's `curl` command; larger ones are
/// read from a file saved from the page.
const INLINE_BODY: usize = 64 * 1024;

/// A `curl` command that sends what this attempt sent (its headers and the exact payload) to a
/// local receiver, such as `blockhook listen` on its default address.
fn curl_command(a: &AttemptRecord, payload: Option<&[u8]>) -> String {
    let mut cmd = String::from("curl -sS -X POST http://127.0.0.1:9000/");
    for (name, value) in &a.request_headers {
        // curl sets these itself, from the URL and the body.
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("host") {
            continue;
        }
        let _ = write!(cmd, " \\\n  -H {}", sh_quote(&format!("{name}: {value}")));
    }
    match payload {
        Some(p) if p.len() <= INLINE_BODY && std::str::from_utf8(p).is_ok() => {
            let text = String::from_utf8_lossy(p);
            let _ = write!(cmd, " \\\n  --data-binary {}", sh_quote(&text));
        }
        _ => cmd.push_str(" \\\n  --data-binary @payload.json"),
    }
    cmd
}

fn attempt_rows(
    event: &blockhook_core::EventId,
    attempts: &[AttemptRecord],
    payload: Option<&[u8]>,
) -> String {
    if attempts.is_empty() {
        return "<p class=\"hint\">No attempt yet.</p>".to_owned();
    }
    let mut out = String::from(
        r#"<div class="scroll"><table class="attempts"><thead><tr><th scope="col">#</th><th scope="col">Started</th><th scope="col">Status</th><th scope="col">Latency</th><th scope="col">Error</th><th scope="col">Exchange</th></tr></thead><tbody>"#,
    );
    for a in attempts {
        let status = a.status.map_or_else(|| "—".to_owned(), |s| s.to_string());
        let error = a
            .error
            .map(|c| {
                format!(
                    r#"<span class="badge bad">{}</span> <span class="hint">{}</span>"#,
                    c.as_str(),
                    Esc(a.error_detail.as_deref().unwrap_or(""))
                )
            })
            .unwrap_or_default();
        let curl_id = format!("curl-{}", a.id);
        let _ = write!(
            out,
            r#"<tr class="attempt"><td>{n}</td><td>{when}</td><td>{status}</td><td>{ms} ms</td><td>{error}</td><td><details><summary>Request and response</summary>{debug}<h4>Request headers</h4>{rq}<h4>Request body</h4><p class="hint">The event's payload above, byte for byte{size}.</p><h4>Replay it</h4><p class="hint">Sends this exact request to a receiver on your machine (<code>blockhook listen</code> listens on 127.0.0.1:9000).</p><pre class="body curl" id="{curl_id}">{curl}</pre>{copy}<h4>Response headers</h4>{rs}<h4>Response body</h4>{body}</details></td></tr>"#,
            n = a.number,
            when = time(a.started_at),
            ms = a.latency_ms,
            debug = super::debugger::attempt_link(event, &a.id),
            rq = header_list(&a.request_headers),
            size = payload
                .map(|p| format!(" ({} bytes)", p.len()))
                .unwrap_or_default(),
            curl = Esc(&curl_command(a, payload)),
            copy = copy_button(&format!("#{curl_id}"), "Copy curl command"),
            rs = header_list(&a.response_headers),
            body = body_excerpt(&a.response_body, a.response_truncated),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn delivery_section(
    ui: &Ui,
    event: &blockhook_core::EventId,
    d: &Delivery,
    names: &HashMap<EndpointId, String>,
    attempts: &[AttemptRecord],
    payload: Option<&[u8]>,
) -> String {
    let next = d
        .next_attempt_at
        .map(|t| format!(" · next attempt {}", time(t)))
        .unwrap_or_default();
    let n = match d.attempts {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    format!(
        r#"<section class="card delivery" id="{id}"><h3>{state} {name}</h3><p class="hint">{origin} delivery <span class="mono">{id}</span> · {n}{next}</p>{rows}<div class="actions">{retry}</div></section>"#,
        state = delivery_badge(d.state.as_str()),
        name = Esc(&endpoint_name(names, &d.endpoint_id)),
        origin = match d.origin {
            blockhook_core::DeliveryOrigin::Initial => "initial",
            blockhook_core::DeliveryOrigin::Resend => "resend",
        },
        id = d.id,
        rows = attempt_rows(event, attempts, payload),
        retry = button_form(
            ui,
            &format!("/ui/deliveries/{}/retry", d.id),
            "Retry this delivery",
            ""
        ),
    )
}

/// `GET /ui/events/{id}`.
pub async fn detail(ui: Ui, State(state): State<AppState>, Path(id): Path<String>) -> UiResult {
    let merchant = ui.merchant()?;
    let manage::EventDetail {
        event: ev,
        deliveries,
    } = manage::detail(&state, merchant, &event_id(&id)?).await?;
    let names = endpoint_names(&ui, &state).await?;
    let mut sections = String::new();
    let raw = ev.payload.as_ref().map(|p| p.bytes().as_ref());
    for DeliveryDetail { delivery, attempts } in &deliveries {
        sections.push_str(&delivery_section(
            &ui, &ev.id, delivery, &names, attempts, raw,
        ));
    }
    if deliveries.is_empty() {
        sections.push_str("<p>No endpoint received this event.</p>");
    }
    let payload = match &ev.payload {
        Some(p) => {
            let exact = String::from_utf8_lossy(p.bytes());
            let pretty = serde_json::from_slice::<Value>(p.bytes())
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| exact.clone().into_owned());
            format!(
                r#"<details open class="payload-view"><summary>Exact bytes ({len} bytes, as received and signed)</summary><pre class="body payload" id="payload-exact">{exact}</pre>{copy}</details>
<details class="payload-view"><summary>Pretty (re-indented for reading; not what is signed)</summary><pre class="body" id="payload-pretty">{pretty}</pre></details>"#,
                len = p.bytes().len(),
                exact = Esc(&exact),
                pretty = Esc(&pretty),
                copy = copy_button("#payload-exact", "Copy payload"),
            )
        }
        None => "<p class=\"hint\">The payload was removed by retention.</p>".to_owned(),
    };
    let mut targets = String::from(r#"<option value="all">every endpoint it went to</option>"#);
    let mut sorted: Vec<_> = names.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(b.1));
    for (eid, name) in sorted {
        let _ = write!(targets, r#"<option value="{eid}">{}</option>"#, Esc(name));
    }
    let limits = state.settings.resend_limits();
    let fields = key_fields(&ev)
        .into_iter()
        .map(|(k, v)| format!("<dt>{k}</dt><dd>{}</dd>", Esc(&v)))
        .collect::<String>();
    let body = format!(
        r#"<section class="card"><dl class="facts"><dt>Id</dt><dd><span class="mono" id="event-id">{id}</span> {copy_id}</dd><dt>Type</dt><dd>{ty}</dd>
<dt>Created</dt><dd>{created}</dd>{fields}<dt>Resends</dt><dd>{resends} of {max}</dd></dl></section>
<h2>Payload</h2>{payload}
<h2>Deliveries</h2>{sections}
<h2>Resend</h2><form method="post" action="/ui/events/{id}/resend" class="card">{csrf}
<label for="resend-to">Send again to</label><select id="resend-to" name="endpoint">{targets}</select>
<p class="hint">At most {max} resends per event, within {window} of its creation (until {deadline}).</p>
<button type="submit" class="primary">Resend</button></form>"#,
        id = ev.id,
        ty = Esc(ev.event_type.as_str()),
        created = time(ev.created_at),
        resends = ev.resend_count,
        max = limits.max_per_event,
        copy_id = copy_button("#event-id", "Copy id"),
        csrf = csrf_field(&ui),
        window = duration(limits.window),
        deadline = iso(ev.created_at + limits.window),
    );
    let title = format!("Event {}", ev.event_type.as_str());
    Ok(page(&title, Some(&ui), ui.flash.as_deref(), &body).into_response())
}

/// The resend form.
#[derive(Debug, Deserialize)]
pub struct ResendForm {
    #[serde(default)]
    endpoint: String,
}

/// `POST /ui/events/{id}/resend`: queues new deliveries now, or says which limit was reached.
pub async fn resend(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Csrf(Form(input)): Csrf<Form<ResendForm>>,
) -> UiResult {
    let merchant = ui.merchant()?;
    let event = event_id(&id)?;
    let endpoint_id = match input.endpoint.as_str() {
        "" | "all" => None,
        raw => Some(endpoint_id(raw)?.to_string()),
    };
    match manage::resend(&state, merchant, &event, ResendRequest { endpoint_id }).await {
        Ok(r) => ui.flash(queued("Resend queued", r.delivery_ids.len())),
        Err(ApiError::Conflict(why)) => ui.flash(format!("Not resent: {why}")),
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to(&format!("/ui/events/{event}")).into_response())
}

/// `Resend queued: 1 new delivery.` / `…: 3 new deliveries.`
fn queued(what: &str, n: usize) -> String {
    match n {
        1 => format!("{what}: 1 new delivery."),
        n => format!("{what}: {n} new deliveries."),
    }
}

/// `POST /ui/deliveries/{id}/retry`: sends one delivery again (a resend of its event to its
/// endpoint, within the same limits), or says which limit was reached.
pub async fn retry(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    let merchant = ui.merchant()?;
    let delivery = DeliveryId::parse(&id).map_err(|_| UiError::NotFound)?;
    let d = manage::delivery(&state, merchant, &delivery).await?;
    match manage::retry(&state, merchant, &d).await {
        Ok(r) => ui.flash(queued("Retry queued", r.delivery_ids.len())),
        Err(ApiError::Conflict(why)) => ui.flash(format!("Not retried: {why}")),
        Err(e) => return Err(e.into()),
    }
    let event = d.event_id;
    Ok(Redirect::to(&format!("/ui/events/{event}")).into_response())
}
