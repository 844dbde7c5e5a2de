-- Fewer index entries per attempt (schema version 10): every delivered attempt inserts one row
-- here, and each index is one more b-tree insert (and WAL record) on the hot path.
-- - `attempts_by_start` served retention alone; retention now finds old attempts per endpoint
--   through `attempts_by_endpoint`, as the embedded store always did.
-- - The primary key on `id` alone was never read (an attempt is looked up by its delivery); the
--   key becomes (delivery_id, id), which also serves every read by delivery, so
--   `attempts_by_delivery` goes (their few attempts are sorted after the read).
-- Rebuilding the key takes a lock on `attempts` for as long as the index build: run
-- `blockhook migrate` at a quiet time on a large table.
DROP INDEX attempts_by_start;
ALTER TABLE attempts DROP CONSTRAINT attempts_pkey, ADD PRIMARY KEY (delivery_id, id);
DROP INDEX attempts_by_delivery;
