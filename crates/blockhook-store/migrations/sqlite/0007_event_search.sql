-- Searchable payload values: one row per (event, configured field) whose value the event's
-- payload holds at the top level as a string or number, written in the event's ingest
-- transaction. The primary key is the lookup "this merchant's events whose field has this
-- value", newest (highest id) last; WITHOUT ROWID keeps it the only B-tree. Rows go with their
-- merchant (events are only ever deleted that way).
CREATE TABLE event_search (
    merchant_id TEXT NOT NULL REFERENCES merchants (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    field       TEXT NOT NULL,
    value       TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (merchant_id, field, value, event_id)
) WITHOUT ROWID;
