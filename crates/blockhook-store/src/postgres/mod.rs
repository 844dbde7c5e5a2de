//! The PostgreSQL backend, for several blockhook processes (API and workers) sharing one
//! database.
//!
//! Design, in short:
//! - **Few round trips.** Every hot-path verb is one statement (one implicit transaction) over
//!   arrays, whatever the batch size: `claim_due`, `finish`, `renew_leases`; `ingest` is two (read
//!   the merchants' endpoints, then one statement that stores events and deliveries and
//!   notifies), and the hand-off (`ingest_and_claim`) adds the claim. Transaction control is only
//!   used where a read must gate a write (`resend`), where several writes must land together
//!   (`save_watch`), and where a later statement must see what an earlier one waited for
//!   (deleting an endpoint or a merchant: their attempts go last, see `endpoints`).
//! - **Safe concurrent claiming.** `FOR UPDATE SKIP LOCKED` plus a lease that moves
//!   `next_attempt_at` to its expiry (see `queue`).
//! - **Cross-process wake-ups.** `LISTEN`/`NOTIFY` on `blockhook_due` (see `listen`).
//! - **Resilience.** A lost connection surfaces as `Error::Unavailable` (see `crate::classify`),
//!   and the pool replaces dead connections by itself.
//!
//! Files, mirroring `sqlite/` and the traits of `blockhook_core::store`: `db` (the type, the
//! pool, opening and migrating, shared SQL helpers), then one file per concern implementing its
//! trait directly, each statement in a `const` just above the code that runs it: `merchants`
//! (and API keys), `endpoints`, `events` (ingest, logs, backlog, health), `queue` (claim, renew,
//! finish, resend, recover), `maintenance` (ping, stats, retention, job locks, key rotation).
//! Below them: `rows` (this backend's row decoding; the shared part is `crate::rows`) and
//! `listen`. Beside them: `schema` (throwaway schemas for tools) and, with the `contract`
//! feature, `testing`. Imports only go downwards: concern files use `db`, `rows`, `listen`;
//! `db` uses `listen` only.

mod activity;
mod alerts;
mod db;
mod endpoints;
mod events;
mod listen;
mod maintenance;
mod merchants;
mod queue;
mod rows;
pub mod schema;
mod targets;
#[cfg(feature = "contract")]
pub mod testing;

pub use db::PgStore;
