//! Endpoints: the list (enabled state, 24 h success rate) with a create form, and one endpoint's
//! page: edit, enable or disable, delete (after a confirmation page), reveal or rotate the
//! secret, and send a test webhook showing the request sent and the response received; with
//! ordered delivery, the held keys and their release (`ordering`).

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use blockhook_core::{Endpoint, EventType, SigningMode, Timestamp};

use super::{
    DAY, body_excerpt, copy_button, delivery_badge, endpoint_id, header_list, ordering,
    success_rate,
};
use crate::manage::activity::{self, ActivityView, Bar};
use crate::manage::endpoints::{
    self as manage, CreateEndpoint, EndpointWithHealth, RecoverRequest, RotateSecret,
    TestSendRequest, UpdateEndpoint,
};
use crate::state::AppState;
use crate::ui::charts::{Stack, hourly_percentiles, latency_chart, stacked_bars};
use crate::ui::csrf::{Csrf, NoFields};
use crate::ui::error::{UiError, UiResult};
use crate::ui::html::{Esc, duration, iso, parse_utc, time};
use crate::ui::layout::{button_form, csrf_field, page};
use crate::ui::session::Ui;

/// The fields of the create and edit forms.
#[derive(Debug, Deserialize)]
pub struct EndpointForm {
    url: String,
    #[serde(default)]
    event_types: String,
    #[serde(default)]
    signing_mode: String,
    #[serde(default)]
    success_policy: String,
    #[serde(default)]
    rate_limit: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    headers: String,
    #[serde(flatten)]
    ordering: ordering::OrderingFields,
}

impl EndpointForm {
    fn event_types(&self) -> Vec<String> {
        self.event_types
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn rate_limit(&self) -> Result<Option<u32>, UiError> {
        match self.rate_limit.trim() {
            "" => Ok(None),
            n => n.parse::<u32>().map(Some).map_err(|_| {
                UiError::Invalid("rate limit: must be a whole number of requests per second".into())
            }),
        }
    }

    /// `Name: value` per line; blank lines are skipped.
    fn headers(&self) -> Result<Vec<(String, String)>, UiError> {
        self.headers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| {
                        UiError::Invalid(format!(
                            "custom headers: {l:?} is not a \"Name: value\" line"
                        ))
                    })
            })
            .collect()
    }

    fn text(s: &str) -> Option<String> {
        Some(s.trim().to_owned()).filter(|s| !s.is_empty())
    }

    fn to_create(&self) -> Result<CreateEndpoint, UiError> {
        Ok(CreateEndpoint {
            url: self.url.trim().to_owned(),
            description: Self::text(&self.description),
            event_types: self.event_types(),
            signing_mode: Self::text(&self.signing_mode),
            success_policy: Self::text(&self.success_policy),
            headers: self.headers()?,
            rate_limit: self.rate_limit()?,
            label: Self::text(&self.label),
            secret: None,
            ordering: Some(self.ordering.to_input()),
        })
    }

    fn to_update(&self) -> Result<UpdateEndpoint, UiError> {
        Ok(UpdateEndpoint {
            url: Some(self.url.trim().to_owned()),
            description: Some(Self::text(&self.description)),
            event_types: Some(self.event_types()),
            signing_mode: Self::text(&self.signing_mode),
            success_policy: Self::text(&self.success_policy),
            rate_limit: Some(self.rate_limit()?),
            headers: Some(self.headers()?),
            label: Some(Self::text(&self.label)),
            ordering: Some(self.ordering.to_input()),
            ..UpdateEndpoint::default()
        })
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

/// The create/edit form's fields, prefilled from `ep` when editing.
fn form_fields(ep: Option<&Endpoint>, prefix: &str) -> String {
    let url = ep.map(|e| e.url.as_str().to_owned()).unwrap_or_default();
    let types = ep
        .map(|e| {
            e.filter
                .types()
                .iter()
                .map(EventType::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mode = ep.map_or("sorted", |e| e.signing_mode.as_str());
    let policy = ep.map_or("200", |e| e.success_policy.as_str());
    let rate = ep
        .and_then(|e| e.rate_limit)
        .map(|r| r.to_string())
        .unwrap_or_default();
    let label = ep
        .and_then(|e| e.label.as_ref())
        .map(|l| l.as_str().to_owned())
        .unwrap_or_default();
    let description = ep.and_then(|e| e.description.clone()).unwrap_or_default();
    let headers = ep
        .map(|e| {
            e.headers
                .pairs()
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect::<String>()
        })
        .unwrap_or_default();
    let modes = select(
        "signing_mode",
        &format!("{prefix}mode"),
        &[
            ("sorted", "sorted (canonical key=value)"),
            ("raw", "raw (exact body)"),
            ("standard", "standard (Standard Webhooks, whsec_ secret)"),
        ],
        mode,
    );
    let policies = select(
        "success_policy",
        &format!("{prefix}policy"),
        &[("200", "only 200"), ("2xx", "any 2xx")],
        policy,
    );
    format!(
        r#"<label for="{prefix}url">URL</label>
<input id="{prefix}url" name="url" type="url" required value="{}" placeholder="https://merchant.example/webhooks">
<label for="{prefix}types">Event types <span class="hint">(comma separated; empty = all)</span></label>
<input id="{prefix}types" name="event_types" value="{}" placeholder="Payment, Payout">
<label for="{prefix}mode">Signing mode</label>{modes}
<label for="{prefix}policy">Success policy</label>{policies}
<label for="{prefix}rate">Rate limit <span class="hint">(requests per second; empty = none)</span></label>
<input id="{prefix}rate" name="rate_limit" inputmode="numeric" pattern="[0-9]*" value="{}">
<label for="{prefix}label">Label</label>
<input id="{prefix}label" name="label" value="{}">
<label for="{prefix}description">Description</label>
<input id="{prefix}description" name="description" value="{}">
<label for="{prefix}headers">Custom headers <span class="hint">(one <code>Name: value</code> per line, sent with every request; at most 20)</span></label>
<textarea id="{prefix}headers" name="headers" rows="3" spellcheck="false" placeholder="X-Shop-Id: 42">{}</textarea>
{}"#,
        Esc(&url),
        Esc(&types),
        Esc(&rate),
        Esc(&label),
        Esc(&description),
        Esc(&headers),
        ordering::form_fields(ep, prefix)
    )
}

fn test_form(ui: &Ui, ep: &Endpoint) -> String {
    let first = ep
        .filter
        .types()
        .first()
        .map_or("Payment", EventType::as_str);
    let mut opts = String::new();
    for t in EventType::BUILT_IN {
        let sel = if t.eq_ignore_ascii_case(first) {
            " selected"
        } else {
            ""
        };
        let _ = write!(opts, r#"<option value="{t}"{sel}>{t}</option>"#);
    }
    format!(
        r#"<form method="post" action="/ui/endpoints/{}/test" class="inline">{}<label class="sr" for="test-type">Sample event</label><select id="test-type" name="event_type" class="compact">{opts}</select><button type="submit" class="primary">Send test webhook</button></form>"#,
        ep.id,
        csrf_field(ui)
    )
}

/// The signing mode, and the previous secret's end while a rotation's overlap lasts.
fn signing_fact(ep: &Endpoint, now: Timestamp) -> String {
    let mode = Esc(ep.signing_mode.as_str());
    match &ep.previous_secret {
        Some(p) if p.signs_at(now) => format!(
            r#"<span class="mono">{mode}</span> <span class="hint">(the previous secret also signs until {})</span>"#,
            time(p.until)
        ),
        _ => format!(r#"<span class="mono">{mode}</span>"#),
    }
}

/// The rotate action: in `standard` mode with a choice of overlap (both secrets sign meanwhile);
/// in the BlockATM modes, which send one signature, a plain button.
fn rotate_form(ui: &Ui, ep: &Endpoint) -> String {
    if ep.signing_mode != SigningMode::Standard {
        return button_form(
            ui,
            &format!("/ui/endpoints/{}/rotate", ep.id),
            "Rotate secret",
            "",
        );
    }
    let overlaps = select(
        "overlap",
        "rotate-overlap",
        &[
            ("0s", "no overlap"),
            ("1h", "old secret signs 1 h more"),
            ("24h", "old secret signs 24 h more"),
            ("7d", "old secret signs 7 days more"),
        ],
        "24h",
    );
    format!(
        r#"<form method="post" action="/ui/endpoints/{}/rotate" class="inline">{}<label class="sr" for="rotate-overlap">Overlap</label>{overlaps}<button type="submit">Rotate secret</button></form>"#,
        ep.id,
        csrf_field(ui)
    )
}

fn state_badge(ep: &Endpoint) -> String {
    if ep.enabled {
        r#"<span class="badge ok">enabled</span>"#.to_owned()
    } else {
        let why = ep.disabled_reason.as_deref().unwrap_or("disabled");
        format!(
            r#"<span class="badge bad" title="{}">disabled</span>"#,
            Esc(why)
        )
    }
}

/// What the endpoint watch says about `ep`: why and when it was disabled, or since when it
/// fails (nothing for an endpoint without failures).
fn alert_facts(ui: &Ui, ep: &Endpoint) -> String {
    let alert = ui.alerts.iter().find(|a| a.endpoint_id == ep.id);
    let by_watch = alert.is_some_and(|a| a.state == blockhook_core::AlertState::Disabled);
    let manual = if ep.enabled || by_watch {
        String::new()
    } else {
        // Disabled otherwise (by its merchant, or a 410 Gone): the reason and the last change.
        format!(
            r#"<dt>Disabled</dt><dd id="disabled-why">{} — {}</dd>"#,
            time(ep.updated_at),
            Esc(ep.disabled_reason.as_deref().unwrap_or("disabled"))
        )
    };
    let Some(a) = alert else {
        return manual;
    };
    let since = a.failing_since.map(time).unwrap_or_default();
    let mut facts = match a.state {
        blockhook_core::AlertState::Disabled => format!(
            r#"<dt>Disabled</dt><dd id="disabled-why">{} — {}</dd>"#,
            time(a.updated_at),
            Esc(ep
                .disabled_reason
                .as_deref()
                .unwrap_or("disabled automatically"))
        ),
        blockhook_core::AlertState::Failing => format!(
            r#"<dt>Failing</dt><dd id="failing-since">since {since}, {} failed attempts in a row</dd>"#,
            a.streak
        ),
        blockhook_core::AlertState::Ok => format!(
            r#"<dt>Failures</dt><dd>{} in a row since {since}</dd>"#,
            a.streak
        ),
    };
    if !by_watch {
        facts.insert_str(0, &manual);
    }
    if let Some(e) = &a.last_error {
        let _ = write!(
            facts,
            r#"<dt>Last error</dt><dd class="mono">{}</dd>"#,
            Esc(e)
        );
    }
    facts
}

fn name_of(ep: &Endpoint) -> String {
    ep.label
        .as_ref()
        .map_or_else(|| ep.url.as_str().to_owned(), |l| l.as_str().to_owned())
}

/// `GET /ui/endpoints`.
pub async fn list(ui: Ui, State(state): State<AppState>) -> UiResult {
    let merchant = ui.merchant()?;
    let since = state.clock.now() - DAY;
    let endpoints = manage::with_health(&state, merchant, [since]).await?;
    let mut rows = String::new();
    for EndpointWithHealth {
        endpoint: ep,
        health: [health],
    } in &endpoints
    {
        let _ = write!(
            rows,
            r#"<tr><td><a href="/ui/endpoints/{id}">{name}</a><div class="hint mono">{url}</div></td><td>{badge}</td><td>{rate}</td><td>{types}</td></tr>"#,
            id = ep.id,
            name = Esc(&name_of(ep)),
            url = Esc(ep.url.as_str()),
            badge = state_badge(ep),
            rate = success_rate(health),
            types = Esc(&types_of(ep)),
        );
    }
    let table = if endpoints.is_empty() {
        "<p>No endpoints yet. Create one below.</p>".to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table class="stack"><thead><tr><th scope="col">Endpoint</th><th scope="col">State</th><th scope="col">Success (24 h)</th><th scope="col">Event types</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let body = format!(
        r#"{table}<h2>Create an endpoint</h2><form method="post" action="/ui/endpoints" class="card">{}{}<button type="submit" class="primary">Create endpoint</button></form>"#,
        csrf_field(&ui),
        form_fields(None, "new-")
    );
    Ok(page("Endpoints", Some(&ui), ui.flash.as_deref(), &body).into_response())
}

/// `POST /ui/endpoints`.
pub async fn create(
    ui: Ui,
    State(state): State<AppState>,
    Csrf(Form(input)): Csrf<Form<EndpointForm>>,
) -> UiResult {
    let view = manage::create(&state, ui.merchant()?, input.to_create()?).await?;
    let id = view.id;
    ui.flash("Endpoint created. Reveal its secret below to configure your receiver.");
    Ok(Redirect::to(&format!("/ui/endpoints/{id}")).into_response())
}

async fn load(ui: &Ui, state: &AppState, raw: &str) -> Result<Endpoint, UiError> {
    let merchant = ui.merchant()?;
    Ok(manage::endpoint(state, merchant, &endpoint_id(raw)?).await?)
}

/// One endpoint's page, with an optional result section (revealed secret, test send) on top:
/// its facts and actions, its figures (success, latency, queue, failure streak), deliveries per
/// hour and per day, its newest deliveries, recovery, held keys, latency per hour, and the
/// settings form.
async fn render_detail(ui: &Ui, state: &AppState, ep: &Endpoint, extra: &str) -> UiResult {
    let merchant = ui.merchant()?;
    let now = state.clock.now();
    let (a, latencies) = activity::activity_with_health(state, merchant, &ep.id).await?;
    let id = &ep.id;
    let toggle = if ep.enabled {
        button_form(
            ui,
            &format!("/ui/endpoints/{id}/enabled?on=false"),
            "Disable",
            "",
        )
    } else {
        button_form(
            ui,
            &format!("/ui/endpoints/{id}/enabled?on=true"),
            "Enable",
            "",
        )
    };
    let body = format!(
        r#"{extra}<section class="card"><dl class="facts">
<dt>Id</dt><dd><span class="mono" id="endpoint-id">{id}</span> {copy_id}</dd><dt>URL</dt><dd class="mono">{url}</dd>
<dt>State</dt><dd>{badge}</dd>
<dt>Signing</dt><dd>{signing}</dd><dt>Event types</dt><dd>{types}</dd><dt>Custom headers</dt><dd>{headers}</dd>
<dt>Created</dt><dd>{created}</dd><dt>Updated</dt><dd>{updated}</dd>
<dt>Ordering</dt><dd id="ordering">{ordering}</dd>{alert}</dl>
<div class="actions">{test}{toggle}{reveal}{rotate}
<a class="button danger" href="/ui/endpoints/{id}/delete">Delete…</a></div></section>
{figures}
<h2>Deliveries</h2>{charts}
<h2>Newest deliveries</h2>{recent}
<h2>Recover failed deliveries</h2>{recover}
{held}<h2>Latency</h2><figure>{latency}<figcaption><span class="key p50">p50</span> <span class="key p99">p99</span> latency per hour, last 24 h</figcaption></figure>
<h2>Settings</h2><form method="post" action="/ui/endpoints/{id}" class="card">{csrf}{fields}<button type="submit" class="primary">Save changes</button></form>"#,
        copy_id = copy_button("#endpoint-id", "Copy id"),
        url = Esc(ep.url.as_str()),
        badge = state_badge(ep),
        types = Esc(&types_of(ep)),
        headers = if ep.headers.pairs().is_empty() {
            "<span class=\"hint\">none</span>".to_owned()
        } else {
            header_list(ep.headers.pairs())
        },
        created = time(ep.created_at),
        updated = time(ep.updated_at),
        ordering = ordering::describe(&ep.ordering),
        alert = alert_facts(ui, ep),
        held = ordering::held_section(ui, state, ep).await?,
        reveal = button_form(
            ui,
            &format!("/ui/endpoints/{id}/secret"),
            "Reveal secret",
            ""
        ),
        signing = signing_fact(ep, now),
        rotate = rotate_form(ui, ep),
        test = test_form(ui, ep),
        figures = figures(&a, &latencies),
        charts = activity_charts(&a),
        recent = recent_table(&a),
        recover = recover_form(ep, now, state),
        latency = latency_chart(
            &hourly_percentiles(now, 24, &latencies.latencies),
            &name_of(ep)
        ),
        csrf = csrf_field(ui),
        fields = form_fields(Some(ep), "ep-"),
    );
    Ok(page(
        &format!("Endpoint {}", name_of(ep)),
        Some(ui),
        ui.flash.as_deref(),
        &body,
    )
    .into_response())
}

fn types_of(ep: &Endpoint) -> String {
    if ep.filter.types().is_empty() {
        "all".to_owned()
    } else {
        ep.filter
            .types()
            .iter()
            .map(EventType::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The four figure cards: success and latency, queue, failure streak.
fn figures(a: &ActivityView, day: &blockhook_core::EndpointHealth) -> String {
    let ms = |v: Option<u32>| v.map_or_else(|| "—".to_owned(), |v| format!("{v} ms"));
    let streak = &a.streak;
    let streak_text = if streak.failed_attempts == 0 {
        "<div class=\"stat\">0</div><p class=\"hint\">no failed attempt since the last success</p>"
            .to_owned()
    } else {
        format!(
            r#"<div class="stat bad">{n}{plus}</div><p class="hint">failed attempts in a row{since}{last}</p>"#,
            n = streak.failed_attempts,
            plus = if streak.capped { "+" } else { "" },
            since = streak
                .since
                .map(|t| format!(" since {}", time(Timestamp::from_ms(t))))
                .unwrap_or_default(),
            last = streak.last_success.map_or_else(
                || " · no success logged".to_owned(),
                |t| format!(" · last success {}", time(Timestamp::from_ms(t)))
            ),
        )
    };
    format!(
        r#"<div class="stats">
<section class="card" id="fig-success"><h3>Success, last 24 h</h3><div class="stat">{rate}</div><p class="hint">p50 {p50} · p99 {p99}</p></section>
<section class="card" id="fig-queue"><h3>Backlog</h3><div class="stat">{due} due now</div><p class="hint">{scheduled} scheduled for a retry · {in_flight} in flight{oldest}</p></section>
<section class="card" id="fig-streak"><h3>Failure streak</h3>{streak_text}</section>
</div>"#,
        rate = success_rate(day),
        p50 = ms(a.latency.p50_ms),
        p99 = ms(a.latency.p99_ms),
        due = a.queue.due,
        scheduled = a.queue.scheduled,
        in_flight = a.queue.in_flight,
        oldest = a
            .queue
            .oldest_due_age_ms
            .map(|ms| {
                let ms = u64::try_from(ms).unwrap_or(0);
                format!(
                    " · oldest due for {}",
                    duration(std::time::Duration::from_millis(ms))
                )
            })
            .unwrap_or_default(),
    )
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Deliveries per hour (24 h) and per day (7 d), stacked by state.
fn activity_charts(a: &ActivityView) -> String {
    let stack = |b: &Bar, label: String, title: String| Stack {
        label,
        title,
        parts: [b.succeeded, b.failed, b.retrying],
    };
    let hours: Vec<Stack> = a
        .hourly
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let iso = iso(Timestamp::from_ms(b.start));
            let hh = iso.get(11..13).unwrap_or("").to_owned();
            let label = if i % 3 == 0 {
                format!("{hh}h")
            } else {
                String::new()
            };
            stack(
                b,
                label,
                format!("{} {hh}:00 UTC", iso.get(..10).unwrap_or("")),
            )
        })
        .collect();
    let days: Vec<Stack> = a
        .daily
        .iter()
        .map(|b| {
            let iso = iso(Timestamp::from_ms(b.start));
            let weekday = usize::try_from(b.start.div_euclid(86_400_000).rem_euclid(7))
                .ok()
                .and_then(|d| WEEKDAYS.get(d))
                .copied()
                .unwrap_or("");
            let date = iso.get(5..10).unwrap_or("");
            stack(
                b,
                format!("{weekday} {date}"),
                format!("{} (UTC)", iso.get(..10).unwrap_or("")),
            )
        })
        .collect();
    format!(
        r#"<div class="grid2"><figure id="chart-hours">{}<figcaption>Per hour, last 24 h (UTC)</figcaption></figure><figure id="chart-days">{}<figcaption>Per day, last 7 days (UTC)</figcaption></figure></div>
<p class="hint"><span class="key ok">succeeded</span> <span class="key bad">failed</span> <span class="key wait">retrying</span> · by when the event arrived, in the state each delivery is in now</p>"#,
        stacked_bars(&hours, "per hour, last 24 h"),
        stacked_bars(&days, "per day, last 7 days"),
    )
}

/// The newest deliveries, each linking to its event.
fn recent_table(a: &ActivityView) -> String {
    if a.recent.is_empty() {
        return "<p>No delivery yet.</p>".to_owned();
    }
    let mut rows = String::new();
    for d in &a.recent {
        let next = d
            .next_attempt_at
            .map(|t| format!("next {}", time(Timestamp::from_ms(t))))
            .unwrap_or_default();
        let _ = write!(
            rows,
            r#"<tr class="delivery-row"><td>{badge}</td><td><a href="/ui/events/{event}#{id}">{when}</a></td><td>{n}</td><td>{status}</td><td>{next}</td></tr>"#,
            badge = delivery_badge(&d.state),
            event = Esc(&d.event_id),
            id = Esc(&d.id),
            when = time(Timestamp::from_ms(d.created_at)),
            n = d.attempts,
            status = d
                .last_status
                .map_or_else(|| "—".to_owned(), |s| s.to_string()),
        );
    }
    format!(
        r#"<div class="scroll"><table id="recent" class="stack"><thead><tr><th scope="col">State</th><th scope="col">Created</th><th scope="col">Attempts</th><th scope="col">Last status</th><th scope="col">Next attempt</th></tr></thead><tbody>{rows}</tbody></table></div>"#
    )
}

/// Choose a start time, then see how many deliveries a recovery would resend before doing it.
fn recover_form(ep: &Endpoint, now: Timestamp, state: &AppState) -> String {
    let window = state.settings.recover.max_window;
    let default = iso(now - DAY);
    format!(
        r#"<form method="get" action="/ui/endpoints/{id}/recover" class="card">
<label for="recover-since">Resend the deliveries that failed for good, created since (UTC)</label>
<input id="recover-since" name="since" type="datetime-local" value="{since}">
<p class="hint">At most {window} back. The next page shows how many deliveries that is, before anything is resent.</p>
<button type="submit">Preview recovery</button></form>"#,
        id = ep.id,
        since = default.get(..16).unwrap_or(""),
        window = duration(window),
    )
}

/// The `since` of the recovery forms.
#[derive(Debug, Deserialize)]
pub struct RecoverForm {
    #[serde(default)]
    since: String,
}

impl RecoverForm {
    fn since(&self) -> Result<Timestamp, UiError> {
        parse_utc(&self.since)
            .ok_or_else(|| UiError::Invalid("since: use YYYY-MM-DDTHH:MM (UTC)".into()))
    }
}

/// `GET /ui/endpoints/{id}/recover?since=`: how many deliveries a recovery would resend, and
/// the button that does it.
pub async fn recover_preview(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(input): Query<RecoverForm>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    let since = input.since()?;
    let preview = manage::recover(
        &state,
        &ep.merchant_id,
        &ep.id,
        RecoverRequest {
            since: since.ms(),
            dry_run: true,
        },
    )
    .await?;
    let n = preview.requeued;
    let what = match n {
        0 => "No delivery failed for good".to_owned(),
        1 => "1 delivery failed for good".to_owned(),
        n => format!("{n} deliveries failed for good"),
    };
    let action = if n == 0 {
        format!(
            r#"<p><a class="button" href="/ui/endpoints/{}">Back to the endpoint</a></p>"#,
            ep.id
        )
    } else {
        format!(
            r#"<form method="post" action="/ui/endpoints/{id}/recover" class="card">{csrf}<input type="hidden" name="since" value="{since}">
<p>They will be sent again now, each with a fresh round of retries.</p>
<button type="submit" class="primary">Resend {n}</button> <a href="/ui/endpoints/{id}">Cancel</a></form>"#,
            id = ep.id,
            csrf = csrf_field(&ui),
            since = Esc(&input.since),
        )
    };
    let body = format!(
        r#"<p id="recover-preview">{what} since {when} on <span class="mono">{url}</span>.</p>{action}"#,
        when = time(since),
        url = Esc(ep.url.as_str()),
    );
    Ok(page(
        &format!("Recover {}", name_of(&ep)),
        Some(&ui),
        ui.flash.as_deref(),
        &body,
    )
    .into_response())
}

/// `POST /ui/endpoints/{id}/recover`: resends them.
pub async fn recover(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Csrf(Form(input)): Csrf<Form<RecoverForm>>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    let done = manage::recover(
        &state,
        &ep.merchant_id,
        &ep.id,
        RecoverRequest {
            since: input.since()?.ms(),
            dry_run: false,
        },
    )
    .await?;
    ui.flash(match done.requeued {
        1 => "Recovery queued: 1 delivery will be sent again.".to_owned(),
        n => format!("Recovery queued: {n} deliveries will be sent again."),
    });
    Ok(Redirect::to(&format!("/ui/endpoints/{}", ep.id)).into_response())
}

/// `GET /ui/endpoints/{id}`.
pub async fn detail(ui: Ui, State(state): State<AppState>, Path(id): Path<String>) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    render_detail(&ui, &state, &ep, "").await
}

/// `POST /ui/endpoints/{id}`: saves the edit form.
pub async fn update(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Csrf(Form(input)): Csrf<Form<EndpointForm>>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    let view = manage::update(&state, &ep.merchant_id, &ep.id, input.to_update()?).await?;
    if let Some(secret) = view.secret {
        // Switching to `standard` generated a whsec_ secret: show it now, once.
        let ep = load(&ui, &state, &id).await?;
        return render_detail(
            &ui,
            &state,
            &ep,
            &secret_section("Saved. New whsec_ signing secret (standard mode)", &secret),
        )
        .await;
    }
    ui.flash("Saved.");
    Ok(Redirect::to(&format!("/ui/endpoints/{}", ep.id)).into_response())
}

/// `?on=` of the enable/disable action.
#[derive(Debug, Deserialize)]
pub struct Toggle {
    on: bool,
}

/// `POST /ui/endpoints/{id}/enabled?on=true|false`.
pub async fn set_enabled(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(t): axum::extract::Query<Toggle>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    manage::set_enabled(&state, &ep.merchant_id, &ep.id, t.on).await?;
    ui.flash(if t.on {
        "Endpoint enabled."
    } else {
        "Endpoint disabled."
    });
    Ok(Redirect::to(&format!("/ui/endpoints/{}", ep.id)).into_response())
}

/// `GET /ui/endpoints/{id}/delete`: the confirmation step.
pub async fn confirm_delete(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    let body = format!(
        r#"<section class="card"><p>Delete <strong>{}</strong> (<span class="mono">{}</span>) with all its deliveries and attempts? This cannot be undone.</p>
<div class="actions">{}<a class="button" href="/ui/endpoints/{}">Cancel</a></div></section>"#,
        Esc(&name_of(&ep)),
        Esc(ep.url.as_str()),
        button_form(
            &ui,
            &format!("/ui/endpoints/{}/delete", ep.id),
            "Yes, delete it",
            "danger"
        ),
        ep.id
    );
    Ok(page("Delete endpoint?", Some(&ui), None, &body).into_response())
}

/// `POST /ui/endpoints/{id}/delete`.
pub async fn delete(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    manage::delete(&state, &ep.merchant_id, &ep.id).await?;
    ui.flash("Endpoint deleted.");
    Ok(Redirect::to("/ui/endpoints").into_response())
}

fn secret_section(title: &str, secret: &str) -> String {
    format!(
        r#"<section class="card reveal" aria-live="polite"><h2>{}</h2><p><code class="secret" id="secret">{}</code> {}</p><p class="hint">Shown on request only; not stored in this page's address.</p></section>"#,
        Esc(title),
        Esc(secret),
        copy_button("#secret", "Copy secret"),
    )
}

/// `POST /ui/endpoints/{id}/secret`: shows the signing secret.
pub async fn reveal_secret(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    let view = manage::reveal_secret(&state, &ep.merchant_id, &ep.id).await?;
    render_detail(
        &ui,
        &state,
        &ep,
        &secret_section("Signing secret", &view.secret),
    )
    .await
}

/// The rotate form: the overlap, in `standard` mode only.
#[derive(Debug, Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    overlap: String,
}

/// `POST /ui/endpoints/{id}/rotate`: replaces the secret and shows the new one.
pub async fn rotate_secret(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Csrf(Form(input)): Csrf<Form<RotateForm>>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    let options = RotateSecret {
        overlap: EndpointForm::text(&input.overlap),
    };
    let rotated = manage::rotate_secret(&state, &ep.merchant_id, &ep.id, options).await?;
    let ep = load(&ui, &state, &id).await?;
    render_detail(
        &ui,
        &state,
        &ep,
        &secret_section("New signing secret (rotated)", &rotated.secret),
    )
    .await
}

/// The test-send form: which sample event to send.
#[derive(Debug, Deserialize)]
pub struct TestForm {
    #[serde(default)]
    event_type: String,
}

/// `POST /ui/endpoints/{id}/test`: signs and sends a sample event now, outside the queue, and
/// shows what was sent and what came back.
pub async fn send_test(
    ui: Ui,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Csrf(Form(input)): Csrf<Form<TestForm>>,
) -> UiResult {
    let ep = load(&ui, &state, &id).await?;
    let event_type = match input.event_type.as_str() {
        "" => "Payment".to_owned(),
        t => t.to_owned(),
    };
    let out = manage::test_send(
        &state,
        &ep.merchant_id,
        &ep.id,
        TestSendRequest { event_type },
    )
    .await?;
    let (req, resp) = (&out.request, &out.response);
    let status = resp
        .status
        .map_or_else(|| "no response".to_owned(), |s| s.to_string());
    let verdict = if out.success {
        format!(r#"<span class="badge ok">{status} accepted</span>"#)
    } else {
        format!(
            r#"<span class="badge bad">{status} · {}</span> {}"#,
            Esc(resp.error.as_deref().unwrap_or("failed")),
            Esc(resp.error_detail.as_deref().unwrap_or(""))
        )
    };
    let section = format!(
        r#"<section class="card" id="test-result" aria-live="polite"><h2>Test webhook</h2>
<div class="grid2"><div><h3>Request sent</h3><p class="mono">{method} {url}</p>{req_headers}<pre class="body">{payload}</pre></div>
<div><h3>Response received</h3><p id="test-verdict">{verdict} in {latency} ms</p>{resp_headers}{resp_body}</div></div></section>"#,
        method = Esc(&req.method),
        url = Esc(&req.url),
        req_headers = header_list(&req.headers),
        payload = Esc(&req.body),
        latency = resp.latency_ms,
        resp_headers = header_list(&resp.headers),
        resp_body = body_excerpt(resp.body.as_bytes(), resp.truncated),
    );
    render_detail(&ui, &state, &ep, &section).await
}
