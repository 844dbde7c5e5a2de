-- Fewer foreign-key checks per event (schema version 12): each foreign key costs every row
-- inserted under it a referential-integrity trigger (a lookup of the parent row, which it also
-- locks). These two guard nothing the statements do not already guarantee:
-- - `deliveries.event_id`: deliveries are inserted only by the statement that inserts their event
--   (ingest) or in the transaction that holds their event's row lock (resend); events are deleted
--   only with their merchant, whose endpoints go first and take every delivery with them.
-- - `attempts.delivery_id`: attempts are inserted only by the finish statement, for deliveries
--   that same statement has just updated (and so holds locked).
-- Deleting an endpoint or a merchant deletes the attempts explicitly, after the deliveries. The
-- other foreign keys stay: an endpoint or a merchant may be deleted by another process while a
-- statement writes rows that point to it. The SQLite schema never had these two. See
-- "PostgreSQL: no foreign keys from deliveries to events and from attempts to deliveries" in
-- docs/decisions.md.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_delivery_id_fkey;
