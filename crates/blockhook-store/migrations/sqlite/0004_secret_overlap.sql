-- Standard Webhooks: a third signing mode, and the secret an endpoint signed with before its last
-- rotation with until when (Unix ms) it still signs beside the new one (both NULL when there is no
-- overlap).
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt (the documented
-- procedure: new table, copy, drop, rename). No other table references endpoints, and the copy
-- keeps every row and its version.
CREATE TABLE endpoints_new (
    id               TEXT PRIMARY KEY NOT NULL,
    merchant_id      TEXT NOT NULL REFERENCES merchants (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    url              TEXT NOT NULL,
    description      TEXT,
    event_types      TEXT NOT NULL,      -- JSON array of event types, [] = all
    signing_mode     TEXT NOT NULL CHECK (signing_mode IN ('sorted', 'raw', 'standard')),
    success_policy   TEXT NOT NULL CHECK (success_policy IN ('200', '2xx')),
    headers          TEXT NOT NULL,      -- JSON [[name, value], ...]
    rate_limit       INTEGER,
    label            TEXT,
    enabled          INTEGER NOT NULL,
    disabled_reason  TEXT,
    secret           BLOB NOT NULL,      -- sealed (AEAD) by the server; opaque here
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL DEFAULT 0,
    previous_secret  BLOB,               -- sealed like `secret`
    previous_secret_until INTEGER
);
INSERT INTO endpoints_new (id, merchant_id, url, description, event_types, signing_mode,
    success_policy, headers, rate_limit, label, enabled, disabled_reason, secret, created_at,
    updated_at, version)
SELECT id, merchant_id, url, description, event_types, signing_mode, success_policy, headers,
    rate_limit, label, enabled, disabled_reason, secret, created_at, updated_at, version
FROM endpoints;
DROP TABLE endpoints;
ALTER TABLE endpoints_new RENAME TO endpoints;
CREATE INDEX endpoints_merchant ON endpoints (merchant_id, id);
