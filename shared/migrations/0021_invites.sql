-- Issue 12, "Bypass for verified cohorts": signed, expiring invite links that skip one event's queue
-- straight to admission, each usable once. Only the SHA-256 of each link's token is kept (the token is
-- shown once, at issue); revoking keeps the rows so the counts and the audit keep meaning something.
CREATE TABLE invite_batches (
    batch_id    uuid PRIMARY KEY,
    event_id    text NOT NULL REFERENCES events (event_id),
    label       text NOT NULL DEFAULT '' CHECK (char_length(label) <= 200),
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL
);
CREATE INDEX invite_batches_event ON invite_batches (event_id, created_at);

CREATE TABLE invites (
    invite_id   uuid PRIMARY KEY,
    -- A small number per invite: the admission's member in the event's max_active set is its negative,
    -- so it never collides with a queue rank (waitingroom/invites.py).
    serial      bigserial UNIQUE,
    batch_id    uuid NOT NULL REFERENCES invite_batches (batch_id),
    token_hash  bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    used_at     timestamptz,
    revoked_at  timestamptz,
    CHECK (used_at IS NULL OR revoked_at IS NULL)
);
CREATE INDEX invites_batch ON invites (batch_id);
