-- Fan-out targets cached between ingests (schema version 11). Each process keeps, per merchant,
-- what the ingest's fan-out reads (the merchant's status, its enabled endpoints) beside the
-- merchant's `targets_revision`, and the ingest statement stores nothing when a revision it was
-- given is no longer the merchant's: the process then reads the targets again and stores.
-- See "Fan-out targets cached, checked inside the ingest" in docs/decisions.md.
--
-- The revision moves with every change to what the fan-out reads, whoever makes it (another
-- process, `blockhook migrate`, an operator's statement): triggers, not the application.
ALTER TABLE merchants ADD COLUMN targets_revision BIGINT NOT NULL DEFAULT 0;

-- A status change moves the merchant's revision (a suspended merchant's events are refused).
CREATE FUNCTION merchant_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.targets_revision := OLD.targets_revision + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER merchants_targets_revision BEFORE UPDATE OF status ON merchants
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION merchant_status_changed();

-- Any endpoint created, changed or deleted moves its merchant's revision. The table is named
-- through the trigger's own schema, so the trigger works whatever the session's `search_path`.
CREATE FUNCTION endpoint_targets_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'UPDATE %I.merchants SET targets_revision = targets_revision + 1 WHERE id = $1',
        TG_TABLE_SCHEMA)
    USING CASE WHEN TG_OP = 'DELETE' THEN OLD.merchant_id ELSE NEW.merchant_id END;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_targets_revision AFTER INSERT OR UPDATE OR DELETE ON endpoints
    FOR EACH ROW EXECUTE FUNCTION endpoint_targets_changed();
