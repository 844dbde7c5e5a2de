//! Health: per endpoint, attempts and success rate over 24 h and 7 d, and p50/p99 latency per
//! hour over the last 24 h as a server-rendered SVG chart.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;

use super::{DAY, success_rate};
use crate::manage::endpoints::{self as manage, EndpointWithHealth};
use crate::state::AppState;
use crate::ui::charts::{hourly_percentiles, latency_chart};
use crate::ui::error::UiResult;
use crate::ui::html::Esc;
use crate::ui::layout::page;
use crate::ui::session::Ui;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// `GET /ui/health`.
pub async fn show(ui: Ui, State(state): State<AppState>) -> UiResult {
    let merchant = ui.merchant()?;
    let now = state.clock.now();
    let endpoints = manage::with_health(&state, merchant, [now - DAY, now - WEEK]).await?;
    let mut body = String::new();
    if endpoints.is_empty() {
        body.push_str(r#"<p>No endpoints yet. <a href="/ui/endpoints">Create one</a>.</p>"#);
    }
    for EndpointWithHealth {
        endpoint: ep,
        health: [day, week],
    } in &endpoints
    {
        let name = ep
            .label
            .as_ref()
            .map_or_else(|| ep.url.as_str().to_owned(), |l| l.as_str().to_owned());
        let chart = latency_chart(&hourly_percentiles(now, 24, &day.latencies), &name);
        let _ = write!(
            body,
            r#"<section class="card health"><h2><a href="/ui/endpoints/{id}">{name}</a>{off}</h2>
<dl class="facts"><dt>Last 24 h</dt><dd>{d_n} attempts · success {d_rate}</dd><dt>Last 7 d</dt><dd>{w_n} attempts · success {w_rate}</dd></dl>
<figure>{chart}<figcaption><span class="key p50">p50</span> <span class="key p99">p99</span> latency per hour, last 24 h</figcaption></figure></section>"#,
            id = ep.id,
            name = Esc(&name),
            off = if ep.enabled {
                ""
            } else {
                r#" <span class="badge bad">disabled</span>"#
            },
            d_n = day.attempts,
            d_rate = success_rate(day),
            w_n = week.attempts,
            w_rate = success_rate(week),
        );
    }
    Ok(page("Health", Some(&ui), ui.flash.as_deref(), &body).into_response())
}
