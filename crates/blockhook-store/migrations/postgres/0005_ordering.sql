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
-- the claim then passes with one NULL test. ordering_held marks a failed head that holds its key
-- (on_final_failure = "hold") until a resend or a release.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT COLLATE "C";
ALTER TABLE deliveries ADD COLUMN ordering_seq BIGINT;
ALTER TABLE deliveries ADD COLUMN ordering_held BOOLEAN NOT NULL DEFAULT false;
-- The undone deliveries of each key in queue order: what the claim probes to tell a key's head
-- from the deliveries waiting behind it. Only ordered rows that still block are in it.
CREATE INDEX deliveries_ordering ON deliveries (endpoint_id, ordering_key, ordering_seq)
    WHERE ordering_key IS NOT NULL AND (state = 'pending' OR ordering_held);
-- The last sequence number given out per (endpoint, key). Ingest takes it with
-- INSERT ... ON CONFLICT DO UPDATE ... RETURNING, which row-locks the one counter until commit:
-- concurrent ingests serialise per key only, and commit in the order of their numbers.
CREATE TABLE ordering_counters (
    endpoint_id   TEXT COLLATE "C" NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    ordering_key  TEXT COLLATE "C" NOT NULL,
    last_seq      BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, ordering_key)
);
