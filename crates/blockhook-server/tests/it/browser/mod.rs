//! The dashboard in a real headless Chromium: [`kit`] holds what every such test needs, and
//! each other module drives one part of the console.

mod alerts;
mod console;
mod dashboard;
mod debugger;
pub(crate) mod kit;
mod search;
