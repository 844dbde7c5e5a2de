-- Due deliveries per endpoint (schema version 9): a claim whose oldest-due window is filled by one
-- endpoint's backlog (after an outage, its recovered deliveries are all due at once) takes the
-- rest from other endpoints through this index, a few rows each, instead of waiting for that
-- endpoint's slots. See "Claims spread over endpoints" in docs/decisions.md.
CREATE INDEX deliveries_endpoint_due ON deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';
