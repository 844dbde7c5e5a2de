-- Failure alerts (schema version 8): the endpoint watch's state. See docs/alerts.md and the
-- SQLite migration of the same number (same tables, same columns).
CREATE TABLE endpoint_alerts (
    endpoint_id      TEXT PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
    merchant_id      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('ok', 'failing', 'disabled')),
    streak           BIGINT NOT NULL,
    failing_since    BIGINT,
    last_failure_at  BIGINT,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX endpoint_alerts_by_merchant ON endpoint_alerts (merchant_id, endpoint_id);

CREATE TABLE alert_watch (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    watched_until  BIGINT NOT NULL
);
