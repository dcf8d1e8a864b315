-- Issue 11, "Audit you can prove": a hash chain over audit_log, sealed by a background step, and
-- signed checkpoints of its head (shared/audit.py says how each is computed and checked).
--
-- Request paths keep inserting unsealed rows (seq, prev_hash, row_hash NULL); the sealer gives each
-- row, in audit_id order, the next seq and its hashes, once. The chain runs by seq, not audit_id:
-- bigserial ids commit out of order, so a row that commits late simply gets a later seq.
ALTER TABLE audit_log
    ADD COLUMN seq       bigint,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN row_hash  bytea,
    ADD CONSTRAINT audit_log_sealed_whole CHECK (
        (seq IS NULL AND prev_hash IS NULL AND row_hash IS NULL)
        OR (seq IS NOT NULL AND prev_hash IS NOT NULL AND row_hash IS NOT NULL));
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);
CREATE INDEX audit_log_unsealed ON audit_log (audit_id) WHERE seq IS NULL;
CREATE INDEX audit_log_event ON audit_log (event_id, audit_id);

-- Still append-only (the trigger of 0001 stays), with one exception: the sealer may set the seal
-- columns of an unsealed row, once, leaving every other column as it was.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
           AND to_jsonb(NEW) - 'seq' - 'prev_hash' - 'row_hash' = to_jsonb(OLD) - 'seq' - 'prev_hash' - 'row_hash' THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Only the sealer writes the chain: a new row arrives unsealed whatever its writer says.
CREATE FUNCTION audit_log_arrives_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.seq := NULL;
    NEW.prev_hash := NULL;
    NEW.row_hash := NULL;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_log_insert_unsealed
    BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_arrives_unsealed();

-- The chain's head, signed with Ed25519 at intervals (SURGEGATE_AUDIT_SIGNING_KEY). Append-only too.
CREATE TABLE audit_checkpoints (
    checkpoint_id bigserial PRIMARY KEY,
    seq           bigint NOT NULL,       -- the last sealed row it vouches for
    audit_id      bigint NOT NULL,       -- that row's audit_id (for people reading it)
    head_hash     bytea NOT NULL,        -- that row's row_hash
    signed_at     timestamptz NOT NULL,
    key_id        text NOT NULL,         -- which public key verifies it (shared/audit.py key_id)
    signature     bytea NOT NULL
);
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
