-- Searchable payload values: one row per (event, configured field) whose value the event's
-- payload holds at the top level as a string or number, written in the event's ingest
-- statement. The primary key is the lookup "this merchant's events whose field has this value".
-- Rows go with their merchant (events are only ever deleted that way), which keeps the hot
-- path at one index insert per row.
CREATE TABLE event_search (
    merchant_id TEXT COLLATE "C" NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
    field       TEXT COLLATE "C" NOT NULL,
    value       TEXT COLLATE "C" NOT NULL,
    event_id    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (merchant_id, field, value, event_id)
);
