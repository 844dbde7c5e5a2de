-- Messages an event source (NATS JetStream) received but could not turn into events, with the
-- reason; one row per (source, reference), however often the message was delivered.
CREATE TABLE dead_letters (
    id         BIGSERIAL PRIMARY KEY,
    source     TEXT NOT NULL,
    reference  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    body       BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (source, reference)
);
