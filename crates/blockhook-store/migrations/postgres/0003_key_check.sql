-- The key check value: a known text sealed with the master key by the first process (or by
-- `blockhook migrate`). A process whose master key does not open it refuses to start, instead of
-- failing every delivery whose endpoint secret it cannot open. One row at most.
CREATE TABLE key_check (
    id     SMALLINT PRIMARY KEY CHECK (id = 1),
    sealed BYTEA NOT NULL
);
