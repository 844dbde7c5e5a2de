-- Failure alerts (schema version 8): the endpoint watch's state. See docs/alerts.md.
--
-- endpoint_alerts holds a row only for an endpoint with failures since its last success or an
-- alert standing (state 'failing' = endpoint.failing was sent, 'disabled' = the watch disabled
-- it); a recovered endpoint's row is removed. The watch writes it once per pass, never the
-- dispatcher: finishing a delivery (the hot path) writes nothing more than before.
-- alert_watch is the watch's cursor: attempt start times up to watched_until are folded in.
CREATE TABLE endpoint_alerts (
    endpoint_id      TEXT PRIMARY KEY NOT NULL
                     REFERENCES endpoints (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    merchant_id      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('ok', 'failing', 'disabled')),
    streak           INTEGER NOT NULL,
    failing_since    INTEGER,
    last_failure_at  INTEGER,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX endpoint_alerts_merchant ON endpoint_alerts (merchant_id, endpoint_id);

CREATE TABLE alert_watch (
    id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    watched_until  INTEGER NOT NULL
);
