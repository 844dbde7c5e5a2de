-- Endpoint row versions, so that the store can keep one parsed copy of each endpoint in memory
-- and tell at once whether it is still current: every UPDATE of an endpoint row adds 1 (the
-- store's statements do it; `updated_at` is not enough, two changes can share a millisecond).
ALTER TABLE endpoints ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
