-- Named staff credentials (issue 11, "Staff and roles"). A key is stored only as the SHA-256 of the
-- key (a 256-bit random secret: no slow hash needed, see shared/staff.py); revoking keeps the row, so
-- the audit's "staff:NAME" keeps meaning someone, and a revoked name is never handed out again.
CREATE TABLE staff (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    roles       text[] NOT NULL CHECK (cardinality(roles) > 0
                    AND roles <@ ARRAY['operator', 'supply', 'rules', 'support', 'auditor', 'reporting']),
    key_hash    bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
