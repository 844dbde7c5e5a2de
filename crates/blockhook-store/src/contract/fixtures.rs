//! Builders the contract checks share: a merchant, an endpoint with a given filter, an event with
//! a given payload, the attempt and completion a worker would hand back for a claim.
//!
//! Every time is relative to [`T0`] (a fixed instant), never the wall clock, so a check reads the
//! same on any machine and a store that secretly reads the clock gets caught.

use std::sync::Arc;
use std::time::Duration;

use blockhook_core::{
    AttemptId, AttemptRecord, Claim, ClaimRequest, Completion, Endpoint, EndpointId, EndpointUrl,
    Error, ErrorClass, EventFilter, EventId, EventType, ExtraHeaders, IdempotencyKey, MerchantId,
    NewEvent, NewMerchant, Next, Payload, SealedSecret, SigningMode, StoreRef, SuccessPolicy,
    Timestamp,
};
use bytes::Bytes;

/// The instant every check's clock starts at (2023-11-14T22:13:20Z).
pub const T0: Timestamp = Timestamp::from_ms(1_700_000_000_000);

/// The lease [`claim_req`] asks for.
pub const LEASE: Duration = Duration::from_secs(30);

/// `T0` plus `secs` seconds.
pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_ms(T0.ms() + secs * 1000)
}

/// A payload every fixture event carries unless a check needs its own.
pub const PAYLOAD: &str = r#"{"orderNo":"OrderNo_1","amount":"2000.00","status":"SUCCESS"}"#;

/// An event type, parsed.
pub fn ty(raw: &str) -> EventType {
    EventType::parse(raw).expect("fixture event type")
}

/// Creates an active merchant.
pub async fn merchant(store: &StoreRef) -> MerchantId {
    merchant_named(store, "Acme Ltd").await
}

/// Creates an active merchant with this display name.
pub async fn merchant_named(store: &StoreRef, name: &str) -> MerchantId {
    let m = NewMerchant::parse(MerchantId::generate(), name, T0).expect("fixture merchant");
    store.create_merchant(&m).await.expect("create_merchant").id
}

/// An endpoint of `merchant` (not stored) receiving the types in `filter` (empty = all).
pub fn endpoint_spec(merchant: &MerchantId, url: &str, filter: &[&str]) -> Endpoint {
    Endpoint {
        id: EndpointId::generate(),
        merchant_id: merchant.clone(),
        url: EndpointUrl::parse(url, false).expect("fixture url"),
        description: None,
        filter: EventFilter::new(filter.iter().map(|f| ty(f)).collect()).expect("fixture filter"),
        signing_mode: SigningMode::Sorted,
        success_policy: SuccessPolicy::Exactly200,
        headers: ExtraHeaders::default(),
        rate_limit: None,
        label: None,
        enabled: true,
        disabled_reason: None,
        secret: SealedSecret::from_stored(vec![0xA5; 40]),
        previous_secret: None,
        created_at: T0,
        updated_at: T0,
        ordering: Default::default(),
    }
}

/// Creates an enabled endpoint of `merchant` receiving the types in `filter` (empty = all).
pub async fn endpoint(store: &StoreRef, merchant: &MerchantId, filter: &[&str]) -> Endpoint {
    endpoint_at(store, merchant, "https://receiver.example/hook", filter).await
}

/// Creates an enabled endpoint with this URL.
pub async fn endpoint_at(
    store: &StoreRef,
    merchant: &MerchantId,
    url: &str,
    filter: &[&str],
) -> Endpoint {
    let ep = endpoint_spec(merchant, url, filter);
    store.create_endpoint(&ep).await.expect("create_endpoint");
    ep
}

/// Disables (or re-enables) a stored endpoint.
pub async fn set_enabled(store: &StoreRef, ep: &Endpoint, enabled: bool) -> Endpoint {
    let mut ep = store
        .get_endpoint(&ep.merchant_id, &ep.id)
        .await
        .expect("get_endpoint");
    ep.enabled = enabled;
    ep.disabled_reason = if enabled {
        None
    } else {
        Some("disabled by the check".to_owned())
    };
    store.update_endpoint(&ep).await.expect("update_endpoint");
    ep
}

/// An event (not stored) with this payload.
pub fn event_with(
    merchant: &MerchantId,
    event_type: &str,
    payload: &[u8],
    at: Timestamp,
) -> NewEvent {
    let payload = Payload::from_trusted(Bytes::copy_from_slice(payload));
    NewEvent {
        id: EventId::generate(),
        merchant_id: merchant.clone(),
        event_type: ty(event_type),
        // As the server indexes it with the default `[search] fields` (`orderNo`).
        search_keys: blockhook_core::SearchFields::default().keys_of(&payload),
        payload,
        idempotency_key: None,
        ordering_key: None,
        created_at: at,
    }
}

/// An event (not stored) with the standard payload.
pub fn event(merchant: &MerchantId, event_type: &str, at: Timestamp) -> NewEvent {
    event_with(merchant, event_type, PAYLOAD.as_bytes(), at)
}

/// An event (not stored) with an idempotency key.
pub fn keyed_event(merchant: &MerchantId, event_type: &str, key: &str, at: Timestamp) -> NewEvent {
    let mut ev = event(merchant, event_type, at);
    ev.idempotency_key = Some(IdempotencyKey::parse(key).expect("fixture key"));
    ev
}

/// Ingests one event of `event_type` at `at` and returns its id.
pub async fn ingest_one(
    store: &StoreRef,
    merchant: &MerchantId,
    event_type: &str,
    at: Timestamp,
) -> EventId {
    let ev = event(merchant, event_type, at);
    let done = store
        .ingest(std::slice::from_ref(&ev))
        .await
        .expect("ingest");
    assert_eq!(done.len(), 1);
    done[0].event_id.clone()
}

/// A claim request at `now` for up to `max` deliveries, leased for [`LEASE`], no per-endpoint
/// cap beyond `max`, nothing excluded.
pub fn claim_req(now: Timestamp, max: u32) -> ClaimRequest {
    ClaimRequest {
        now,
        max,
        lease_until: now + LEASE,
        per_endpoint_max: max,
        exclude: Vec::new(),
        new_first: false,
    }
}

/// Claims everything due at `now` (up to 10,000).
pub async fn claim_all(store: &StoreRef, now: Timestamp) -> Vec<Claim> {
    store
        .claim_due(&claim_req(now, 10_000))
        .await
        .expect("claim_due")
}

/// The attempt a worker would log for `claim`: `status` (None = no response) and `error`.
pub fn attempt_for(
    claim: &Claim,
    started_at: Timestamp,
    status: Option<u16>,
    error: Option<ErrorClass>,
) -> AttemptRecord {
    AttemptRecord {
        id: AttemptId::generate(),
        delivery_id: claim.delivery_id.clone(),
        number: claim.attempt,
        started_at,
        url: claim.endpoint.url.as_str().to_owned(),
        request_headers: vec![
            (
                "BlockATM-Event".to_owned(),
                claim.event_type.as_str().to_owned(),
            ),
            (
                "BlockATM-Request-Time".to_owned(),
                started_at.ms().to_string(),
            ),
        ],
        status,
        response_headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
        response_body: Bytes::from_static(b"ok"),
        response_truncated: false,
        latency_ms: 42,
        error,
        error_detail: error.map(|e| format!("failed: {}", e.as_str())),
    }
}

/// The completion of `claim` with `next`: a 200 for `Succeeded`, a 500 for retries and give-ups,
/// a 410 for `DisableEndpoint`.
pub fn completion(claim: &Claim, next: Next, at: Timestamp) -> Completion {
    let (status, error) = match next {
        Next::Succeeded => (Some(200), None),
        Next::RetryAt(_) | Next::GiveUp => (Some(500), Some(ErrorClass::BadStatus)),
        Next::DisableEndpoint => (Some(410), Some(ErrorClass::BadStatus)),
    };
    Completion {
        delivery_id: claim.delivery_id.clone(),
        lease: claim.lease,
        attempt: attempt_for(claim, at, status, error),
        next,
        disable_reason: matches!(next, Next::DisableEndpoint).then(|| "410 Gone".to_owned()),
        releases_key: claim.endpoint.ordering.per_key() && !matches!(next, Next::RetryAt(_)),
    }
}

/// Finishes one claim with `next` at `at`, asserting it applied.
pub async fn finish_one(store: &StoreRef, claim: &Claim, next: Next, at: Timestamp) {
    let applied = store
        .finish(Arc::from([completion(claim, next, at)]), at)
        .await
        .expect("finish");
    assert_eq!(applied, 1, "finish with a live lease applies");
}

/// Asserts `r` is `NotFound(what)`.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::NotFound(w)) => assert_eq!(w, what, "NotFound names the missing thing"),
        other => panic!("expected NotFound({what:?}), got {other:?}"),
    }
}

/// Asserts `r` is `Conflict` with a message containing `needle` (case-insensitive).
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str) {
    match r {
        Err(Error::Conflict(msg)) => assert!(
            msg.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase()),
            "Conflict message {msg:?} should mention {needle:?}"
        ),
        other => panic!("expected Conflict(..{needle}..), got {other:?}"),
    }
}

/// Asserts two endpoints are equal field by field (`Endpoint` has no `PartialEq`: secrets are not
/// compared by accident elsewhere).
#[track_caller]
pub fn assert_same_endpoint(got: &Endpoint, want: &Endpoint) {
    assert_eq!(got.id, want.id);
    assert_eq!(got.merchant_id, want.merchant_id);
    assert_eq!(got.url, want.url);
    assert_eq!(got.description, want.description);
    assert_eq!(got.filter, want.filter);
    assert_eq!(got.signing_mode, want.signing_mode);
    assert_eq!(got.success_policy, want.success_policy);
    assert_eq!(got.headers, want.headers);
    assert_eq!(got.rate_limit, want.rate_limit);
    assert_eq!(got.label, want.label);
    assert_eq!(got.enabled, want.enabled);
    assert_eq!(got.disabled_reason, want.disabled_reason);
    assert_eq!(got.secret, want.secret);
    assert_eq!(got.previous_secret, want.previous_secret);
    assert_eq!(got.created_at, want.created_at);
    assert_eq!(got.updated_at, want.updated_at);
    assert_eq!(got.ordering, want.ordering);
}
