-- Ordered delivery per ordering key (docs/ordering.md).
--
-- endpoints.ordering: the endpoint's setting as JSON ({"mode": "per_key", "key_field": ...,
-- "on_final_failure": ...}); NULL is mode "none", so unordered endpoints carry nothing.
ALTER TABLE endpoints ADD COLUMN ordering TEXT;
-- The ordering key the publisher gave (it wins over an endpoint's key_field); kept so that a
-- resend orders the event again.
ALTER TABLE events ADD COLUMN ordering_key TEXT;
-- A delivery of an ordered endpoint carries its key and its place in the key's queue (assigned in
-- the ingest transaction from ordering_counters). Both stay NULL for unordered deliveries, which
-- the claim then passes with one NULL test. ordering_held = 1 marks a failed head that holds its
-- key (on_final_failure = "hold") until a resend or a release.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN ordering_seq INTEGER;
ALTER TABLE deliveries ADD COLUMN ordering_held INTEGER NOT NULL DEFAULT 0;
-- The undone deliveries of each key in queue order: what the claim probes to tell a key's head
-- from the deliveries waiting behind it. Only ordered rows that still block are in it, so its
-- size is the ordered backlog, not the history.
CREATE INDEX deliveries_ordering ON deliveries (endpoint_id, ordering_key, ordering_seq)
    WHERE ordering_key IS NOT NULL AND (state = 'pending' OR ordering_held = 1);
-- The last sequence number given out per (endpoint, key).
CREATE TABLE ordering_counters (
    endpoint_id   TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    ordering_key  TEXT NOT NULL,
    last_seq      INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, ordering_key)
) WITHOUT ROWID;
