//! The parts of a page that depend on who is signed in: the navigation with its sign-out form,
//! CSRF fields and one-button forms. The shell itself (`html::document`) knows no session, so
//! error pages render without one.

use std::fmt::Write as _;

use axum::response::Html;

use super::html::{Esc, document};
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
    document(title, &nav, notice, body)
}
