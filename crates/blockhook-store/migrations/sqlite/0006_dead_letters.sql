-- Messages an event source (NATS JetStream) received but could not turn into events, with the
-- reason; one row per (source, reference), however often the message was delivered.
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    source     TEXT NOT NULL,
    reference  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (source, reference)
);
