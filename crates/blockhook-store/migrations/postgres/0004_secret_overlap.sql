-- Standard Webhooks: a third signing mode, and the secret an endpoint signed with before its last
-- rotation with until when (Unix ms) it still signs beside the new one (both NULL when there is no
-- overlap).
ALTER TABLE endpoints DROP CONSTRAINT endpoints_signing_mode_check;
ALTER TABLE endpoints ADD CONSTRAINT endpoints_signing_mode_check
    CHECK (signing_mode IN ('sorted', 'raw', 'standard'));
ALTER TABLE endpoints ADD COLUMN previous_secret BYTEA;
ALTER TABLE endpoints ADD COLUMN previous_secret_until BIGINT;
