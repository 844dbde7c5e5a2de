//! A merchant's webhook endpoints: where its events are delivered, and how.

use crate::{Cursor, Endpoint, EndpointId, Error, MerchantId, Page};

/// A merchant's endpoints.
#[async_trait::async_trait]
pub trait Endpoints: Send + Sync + 'static {
    /// Stores a new endpoint.
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<(), Error>;
    /// One endpoint of a merchant.
    async fn get_endpoint(&self, merchant: &MerchantId, id: &EndpointId)
    -> Result<Endpoint, Error>;
    /// A merchant's endpoints, newest first.
    async fn list_endpoints(
        &self,
        merchant: &MerchantId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Endpoint>, Error>;
    /// Replaces every mutable field (url, description, filter, modes, headers, rate limit,
    /// label, enabled, disabled reason, secret, updated_at) of an endpoint of `ep.merchant_id`.
    async fn update_endpoint(&self, ep: &Endpoint) -> Result<(), Error>;
    /// Deletes an endpoint with its deliveries and attempts.
    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error>;
}
