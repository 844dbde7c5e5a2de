//! Failure alerts: what the endpoint watch reads from the attempt log and the delivery states,
//! the per-endpoint alert state it keeps, and the one write it makes to an endpoint (disabling
//! it). Nothing here runs on the delivery hot path: the watch reads the attempt log afterwards.

use crate::{
    EndpointAlert, EndpointId, Error, ExhaustedDelivery, FailureWindow, MerchantId, Timestamp,
};

/// The endpoint watch's reads and writes.
#[async_trait::async_trait]
pub trait Alerts: Send + Sync + 'static {
    /// Where the last watch pass stopped (attempt start times up to it are folded in), if any.
    async fn watch_cursor(&self) -> Result<Option<Timestamp>, Error>;
    /// Per endpoint with attempts started in `(from, to]`: its latest success there and the
    /// failures after it. Only endpoints with a failed attempt in the window or an alert row
    /// are listed (healthy endpoints cost nothing to the watch).
    async fn failure_windows(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<FailureWindow>, Error>;
    /// Deliveries now `failed` whose last attempt started in `(from, to]`.
    async fn exhausted_deliveries(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ExhaustedDelivery>, Error>;
    /// The alert rows of one merchant (`Some`) or of every merchant (`None`), by endpoint id.
    async fn endpoint_alerts(
        &self,
        merchant: Option<&MerchantId>,
    ) -> Result<Vec<EndpointAlert>, Error>;
    /// In one transaction: writes `rows` (insert or replace, per endpoint; rows of endpoints
    /// deleted meanwhile are dropped), removes the rows of `cleared`, and moves the cursor to
    /// `cursor`.
    async fn save_watch(
        &self,
        rows: &[EndpointAlert],
        cleared: &[EndpointId],
        cursor: Timestamp,
    ) -> Result<(), Error>;
    /// Disables an endpoint that is still enabled, with `reason` (compare-and-set: an endpoint a
    /// merchant disabled or deleted meanwhile is left alone); whether it did.
    async fn auto_disable(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, Error>;
}
