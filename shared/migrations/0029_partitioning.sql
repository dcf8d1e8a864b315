-- Partitioning (issue 13): the tables that grow with a national program's volume split so that each
-- piece stays small enough to vacuum and index quickly, without weakening any guarantee the database
-- enforces. README "Partitioning" says what was chosen and why; in short:
--
-- * audit_log: RANGE on audit_id, 100,000,000 ids per partition, created ahead by the sealer
--   (audit_log_partitions_ahead below) with a DEFAULT partition as a safety net. Old partitions are
--   detached for archive once exported (shared/partitions.py, `surgegate audit archive`).
--   The one index that cannot stay unique (seq: a unique index must include the partition key) is
--   replaced by a statement trigger that keeps seq unique under the chain's advisory lock.
-- * booking_attempts: HASH on attempt_id, 16 partitions. The primary key stays attempt_id, so
--   ACCEPT_ATTEMPT's ON CONFLICT (attempt_id) and LOCK_ATTEMPT's row lock work as before.
-- * appointments: NOT partitioned. Its unique token_id, its unique (program_id, person_ref) among
--   confirmed rows and the foreign key from booking_attempts.appointment_id share no column a
--   partition key could be, so partitioning it would drop one of them to a per-partition rule.
--
-- Each table is converted the same way: rename the old one, create the partitioned one under the
-- old name with the same columns, defaults and CHECKs, copy the rows, then recreate every index,
-- foreign key and trigger the old table had (read from the catalogue, so none is forgotten) and
-- drop the old table. The migration runs in one transaction (shared/db.py): all or nothing.

-- Recreate on `new` what `old` has beyond its columns: primary key / unique / foreign-key
-- constraints, other indexes, user triggers. Drops `old` in between (its names are reused).
CREATE FUNCTION pg_temp.carry_over(old regclass, new text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ddl text[];
    statement text;
    old_name text := old::text;
BEGIN
    SELECT array_agg(d ORDER BY ord) INTO ddl FROM (
        -- constraints that own an index first (primary key, unique), then foreign keys
        SELECT format('ALTER TABLE %I ADD CONSTRAINT %I %s', new, conname, pg_get_constraintdef(oid)) AS d,
               CASE contype WHEN 'p' THEN 1 WHEN 'u' THEN 2 ELSE 4 END AS ord
        FROM pg_constraint WHERE conrelid = old AND contype IN ('p', 'u', 'f')
        UNION ALL
        SELECT regexp_replace(pg_get_indexdef(i.indexrelid), ' ON (ONLY )?([a-z0-9_]+\.)?' || old_name || ' ',
                              ' ON ' || quote_ident(new) || ' '), 3
        FROM pg_index i
        WHERE i.indrelid = old AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        UNION ALL
        SELECT regexp_replace(pg_get_triggerdef(t.oid), ' ON (ONLY )?([a-z0-9_]+\.)?' || old_name || ' ',
                              ' ON ' || quote_ident(new) || ' '), 5
        FROM pg_trigger t WHERE t.tgrelid = old AND NOT t.tgisinternal
    ) AS defs;
    EXECUTE format('DROP TABLE %s', old);
    FOREACH statement IN ARRAY coalesce(ddl, '{}') LOOP
        EXECUTE statement;
    END LOOP;
END;
$$;

-- --- booking_attempts: HASH (attempt_id) ---------------------------------------------------------

ALTER TABLE booking_attempts RENAME TO booking_attempts_unpartitioned;
CREATE TABLE booking_attempts (LIKE booking_attempts_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY HASH (attempt_id);
DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF booking_attempts FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
                       'booking_attempts_h' || lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;
INSERT INTO booking_attempts SELECT * FROM booking_attempts_unpartitioned;
SELECT pg_temp.carry_over('booking_attempts_unpartitioned', 'booking_attempts');

-- --- audit_log: RANGE (audit_id) -----------------------------------------------------------------

-- Unique seq cannot be a unique index of a table partitioned by audit_id: it becomes a plain index
-- (verify walks the chain through it) and the trigger audit_log_seq_unique below.
DROP INDEX audit_log_seq;
ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
CREATE TABLE audit_log (LIKE audit_log_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (audit_id);
-- Rows beyond every range land here rather than fail a booking; audit_log_partitions_ahead keeps
-- it empty by staying a partition ahead.
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

-- The id sequence belongs to the old table's column: keep it when that table goes.
ALTER SEQUENCE audit_log_audit_id_seq OWNED BY NONE;

-- The partitions (name: audit_log_ + lower bound, 19 digits, so names sort in id order) and their
-- bounds, lowest first.
CREATE VIEW audit_log_partitions AS
SELECT c.relname::text AS name, b[1]::bigint AS lower_id, b[2]::bigint AS upper_id
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''?(-?\d+)''?\) TO \(''?(-?\d+)''?\)') AS b
WHERE i.inhparent = 'audit_log'::regclass AND b IS NOT NULL;

-- Keep at least `width` ids of range partitions ahead of the last id handed out, creating
-- partitions of `width` ids as needed; returns how many it created. Safe to call any time: it takes
-- only a SHARE UPDATE EXCLUSIVE lock on audit_log (ATTACH), so inserts go on meanwhile. Rows that
-- already fell into the default partition stay there; the next range starts above them.
CREATE FUNCTION audit_log_partitions_ahead(width bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
    used bigint;
    lo bigint;
    made integer := 0;
    part text;
BEGIN
    IF width IS NULL OR width < 1 THEN
        RAISE EXCEPTION 'audit_log_partitions_ahead: width must be positive, not %', width;
    END IF;
    SELECT max(upper_id) INTO top FROM audit_log_partitions;
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO used FROM audit_log_audit_id_seq;
    used := greatest(used, coalesce((SELECT max(audit_id) FROM audit_log_default), 0));
    WHILE top IS NULL OR top <= used + width LOOP
        lo := greatest(coalesce(top, 0), coalesce((SELECT max(audit_id) + 1 FROM audit_log_default), 0));
        part := 'audit_log_' || lpad(lo::text, 19, '0');
        -- Created apart and attached with its bounds already proven by a CHECK, so ATTACH needs no
        -- scan of it and only a SHARE UPDATE EXCLUSIVE lock on audit_log.
        EXECUTE format('CREATE TABLE %I (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (audit_id IS NOT NULL AND audit_id >= %s AND audit_id < %s)',
                       part, part || '_bounds', lo, lo + width);
        EXECUTE format('ALTER TABLE audit_log ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', part, lo, lo + width);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bounds');
        top := lo + width;
        made := made + 1;
    END LOOP;
    RETURN made;
END;
$$;

SELECT audit_log_partitions_ahead(100000000);
-- Sealed rows keep their seal: the insert trigger that clears it is recreated after the copy.
INSERT INTO audit_log SELECT * FROM audit_log_unpartitioned;
SELECT pg_temp.carry_over('audit_log_unpartitioned', 'audit_log');
ALTER SEQUENCE audit_log_audit_id_seq OWNED BY audit_log.audit_id;
CREATE INDEX audit_log_seq ON audit_log (seq);

-- seq is unique across all partitions: after a statement sealed rows, no two rows share a seq. The
-- sealer's advisory lock (shared/locks.py AUDIT_CHAIN, key "chain"; re-entrant for the sealer
-- itself) makes concurrent sealing statements check one after the other, each seeing what the one
-- before committed, which is why sealing must run at READ COMMITTED. Cost: one index range scan
-- per partition over the sealed seqs, whatever the table's size.
CREATE FUNCTION audit_log_seq_unique() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;
    hi bigint;
    n bigint;
    distinct_n bigint;
BEGIN
    SELECT min(seq), max(seq), count(*), count(DISTINCT seq) INTO lo, hi, n, distinct_n
    FROM sealed_now WHERE seq IS NOT NULL;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit_log is sealed at READ COMMITTED only (seq uniqueness is checked against committed rows)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('chain', 19));
    IF distinct_n <> n OR (SELECT count(*) FROM audit_log WHERE seq BETWEEN lo AND hi) <> n THEN
        RAISE EXCEPTION 'audit_log seq must be unique (sealing % rows, seq % to %)', n, lo, hi
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_log_seq_unique
    AFTER UPDATE ON audit_log
    REFERENCING NEW TABLE AS sealed_now
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_seq_unique();

-- Partitions detached for archive (shared/partitions.py): what the chain was up to each, so
-- verify starts where the archived rows ended instead of reporting them removed. Append-only.
CREATE TABLE audit_archives (
    partition       text PRIMARY KEY,
    lower_id        bigint NOT NULL,
    upper_id        bigint NOT NULL,
    rows            bigint NOT NULL CHECK (rows >= 0),
    first_seq       bigint,             -- NULL: an empty partition
    last_seq        bigint,
    last_audit_id   bigint,
    last_row_hash   bytea,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_archives_span CHECK ((rows = 0) = (last_seq IS NULL)
        AND (last_seq IS NULL) = (first_seq IS NULL) AND (last_seq IS NULL) = (last_row_hash IS NULL)
        AND (last_seq IS NULL) = (last_audit_id IS NULL))
);
CREATE FUNCTION audit_archives_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_archives is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_archives_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION audit_archives_append_only();
