//! blockhook's domain: merchants, endpoints, events, deliveries, attempts, the retry decision, and
//! the [`Store`] traits through which everything is persisted (one per concern: [`Merchants`],
//! [`Endpoints`], [`Events`], [`Queue`], [`Maintenance`], [`Alerts`]; `Store` is their union).
//!
//! This crate knows no SQL, no HTTP framework and no HTTP client. Values are parsed once at the
//! edge into newtypes (`EndpointUrl`, `EventType`, `Payload`, ...) so every invariant is checked
//! in exactly one place, and the storage backends (SQLite, PostgreSQL) implement those traits in
//! domain verbs, so nothing above the store knows which database is in use.
#![forbid(unsafe_code)]

mod alert;
mod attempt;
mod dead_letter;
mod delivery;
mod endpoint;
mod error;
mod event;
mod ids;
mod merchant;
mod ordering;
mod page;
mod retry;
mod search;
mod store;
mod time;

pub use alert::{
    AlertState, DELIVERY_EXHAUSTED, ENDPOINT_DISABLED, ENDPOINT_FAILING, ENDPOINT_RECOVERED,
    EndpointAlert, ExhaustedDelivery, FailureWindow, OPERATIONAL_TYPES, is_operational,
};
pub use attempt::{AttemptRecord, ErrorClass, Outcome};
pub use dead_letter::DeadLetter;
pub use delivery::{
    Claim, ClaimRequest, Completion, Delivery, DeliveryOrigin, DeliveryState, LeaseToken,
};
pub use endpoint::{
    Endpoint, EndpointUrl, EventFilter, ExtraHeaders, Label, PreviousSecret, SealedSecret,
    SigningMode, SuccessPolicy,
};
pub use error::Error;
pub use event::{
    Event, EventQuery, EventType, FieldError, IdempotencyKey, Ingested, NewEvent, Payload,
    Publication,
};
pub use ids::{ApiKeyId, AttemptId, DeliveryId, EndpointId, EventId, MerchantId};
pub use merchant::{ApiKey, Merchant, MerchantStatus, NewApiKey, NewMerchant};
pub use ordering::{
    HeldKey, MAX_ORDERING_KEY_LEN, OnFinalFailure, Ordering, OrderingKey, OrderingMode,
};
pub use page::{Cursor, Page};
pub use retry::{Next, RetryPolicy};
pub use search::{MAX_SEARCH_FIELDS, MAX_SEARCH_VALUE_LEN, SearchFields, SearchKey};
pub use store::{
    Alerts, EndpointActivity, EndpointBacklog, EndpointHealth, EndpointQueue, Endpoints, Events,
    FailureStreak, HourCounts, JobLock, Maintenance, Merchants, Queue, QueueStats, ResendLimits,
    ResendScope, SecretSlot, SoleProcess, Store, StoreRef,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
