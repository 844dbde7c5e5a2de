//! The parts of a page that depend on who is signed in: the navigation with its sign-out form,
//! the failure alert banner, CSRF fields and one-button forms. The shell itself (`html::document`) knows no session, so
//! error pages render without one.

use std::fmt::Write as _;

use axum::response::Html;

use blockhook_core::AlertState;

use super::html::{Esc, document, time};
use super::session::Ui;

/// The hidden CSRF field every POST form carries.
pub fn csrf_field(ui: &Ui) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        Esc(&ui.csrf)
    )
}

/// A one-button POST form (for actions such as enable or revoke).
pub fn button_form(ui: &Ui, action: &str, label: &str, class: &str) -> String {
    format!(
        r#"<form method="post" action="{}" class="inline">{}<button type="submit" class="{class}">{}</button></form>"#,
        Esc(action),
        csrf_field(ui),
        Esc(label)
    )
}

/// The page shell: navigation (when signed in), a flash notice, the body.
pub fn page(title: &str, ui: Option<&Ui>, notice: Option<&str>, body: &str) -> Html<String> {
    let nav = match ui {
        Some(ui) => {
            let mut links = String::new();
            for (href, label) in [
                ("/ui/endpoints", "Endpoints"),
                ("/ui/events", "Events"),
                ("/ui/health", "Health"),
                ("/ui/debugger", "Debugger"),
            ] {
                let _ = write!(links, r#"<a href="{href}">{label}</a>"#);
            }
            if ui.is_operator() {
                links.push_str(r#"<a href="/ui/operator">Operator</a>"#);
            }
            let who = Esc(&ui.describe()).to_string();
            let id = ui.merchant().map(ToString::to_string).unwrap_or_default();
            format!(
                r#"<nav aria-label="Main">{links}<span class="who" title="{id}">{who}</span><form method="post" action="/ui/logout" class="inline">{}<button type="submit">Sign out</button></form></nav>"#,
                csrf_field(ui)
            )
        }
        None => String::new(),
    };
    let banner = ui.map(alert_banner).unwrap_or_default();
    document(title, &nav, notice, &format!("{banner}{body}"))
}

/// The banner of every merchant page: its endpoints the endpoint watch reports failing or has
/// disabled, each linking to its page (nothing when all is well).
pub fn alert_banner(ui: &Ui) -> String {
    let mut items = String::new();
    for a in &ui.alerts {
        let id = a.endpoint_id.as_str();
        let since = a.failing_since.map(time).unwrap_or_default();
        let what = match a.state {
            AlertState::Ok => continue,
            AlertState::Failing => format!(
                "failing since {since}: {} failed attempts in a row",
                a.streak
            ),
            AlertState::Disabled => {
                format!(
                    "disabled automatically on {}, failing since {since}",
                    time(a.updated_at)
                )
            }
        };
        let last = a
            .last_error
            .as_deref()
            .map(|e| format!(r#"; last error <span class="mono">{}</span>"#, Esc(e)))
            .unwrap_or_default();
        let _ = write!(
            items,
            r#"<li><a href="/ui/endpoints/{id}" class="mono">{id}</a> {what}{last}</li>"#
        );
    }
    if items.is_empty() {
        return String::new();
    }
    format!(
        r#"<section class="alert-banner" role="alert" aria-labelledby="alert-banner-title"><h2 id="alert-banner-title">Endpoints need attention</h2><ul>{items}</ul></section>"#
    )
}
