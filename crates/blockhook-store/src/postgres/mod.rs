//! The PostgreSQL backend, for several blockhook processes (API and workers) sharing one
//! database.
//!
//! Design, in short:
//! - **Few round trips.** Every hot-path verb is one statement (one implicit transaction) over
//!   arrays, whatever the batch size: `claim_due`, `finish`, `renew_leases`; `ingest` is two (read
//!   the merchants' endpoints, then one statement that stores events and deliveries and
//!   notifies). Transaction control is only used where a read must gate a write (`resend`).
//! - **Safe concurrent claiming.** `FOR UPDATE SKIP LOCKED` plus a lease that moves
//!   `next_attempt_at` to its expiry (see `dispatch`).
//! - **Cross-process wake-ups.** `LISTEN`/`NOTIFY` on `blockhook_due` (see `listen`).
//! - **Resilience.** A lost connection surfaces as `Error::Unavailable` (see `crate::classify`),
//!   and the pool replaces dead connections by itself.
//!
//! Files: `store` (the type, the pool, the `Store` impl delegating to the others), one file per
//! aggregate holding its SQL (`merchants`, `endpoints`, `ingest`, `logs`, `dispatch`, `actions`,
//! `ops`), `rows` (row types ↔ domain), `listen`, and `testing`.

mod actions;
mod dispatch;
mod endpoints;
mod ingest;
mod jobs;
mod keys;
mod listen;
mod logs;
mod merchants;
mod ops;
mod rows;
mod store;
pub mod testing;

pub use store::PgStore;
