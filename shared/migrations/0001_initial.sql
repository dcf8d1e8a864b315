-- surgegate initial schema.
-- Capacity is enforced by the database itself: slots.booked can never leave [0, capacity].

CREATE TABLE events (
    event_id            text PRIMARY KEY CHECK (event_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name                text NOT NULL,
    rate_per_s          double precision NOT NULL CHECK (rate_per_s >= 0),
    opens_at            timestamptz,
    prequeue_opens_at   timestamptz,
    closes_at           timestamptz,
    paused              boolean NOT NULL DEFAULT false,
    admission_ttl_s     integer NOT NULL CHECK (admission_ttl_s > 0),
    site_ids            text[],
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    site_id     text PRIMARY KEY CHECK (site_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    name        text NOT NULL,
    region      text NOT NULL,
    timezone    text NOT NULL,          -- IANA zone, validated with zoneinfo on write
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng         double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE slots (
    slot_id     uuid PRIMARY KEY,
    site_id     text NOT NULL REFERENCES sites (site_id),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    capacity    integer NOT NULL CHECK (capacity >= 0),
    booked      integer NOT NULL DEFAULT 0,
    CONSTRAINT slots_booked_within_capacity CHECK (booked BETWEEN 0 AND capacity),
    CONSTRAINT slots_ends_after_start CHECK (ends_at > starts_at)
);
CREATE INDEX slots_site_starts ON slots (site_id, starts_at);

CREATE TABLE appointments (
    appointment_id  uuid PRIMARY KEY,
    event_id        text NOT NULL REFERENCES events (event_id),
    slot_id         uuid NOT NULL REFERENCES slots (slot_id),
    token_id        text NOT NULL,
    person_ref      bytea NOT NULL,     -- keyed hash of the id number; the number itself is never stored
    person_sealed   bytea NOT NULL,     -- name, email, birth date, encrypted
    status          text NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    cancelled_at    timestamptz,
    -- one admission token books at most one appointment, ever
    CONSTRAINT appointments_token_once UNIQUE (token_id)
);
-- one person holds at most one active appointment per event
CREATE UNIQUE INDEX appointments_person_active
    ON appointments (event_id, person_ref) WHERE status = 'confirmed';
CREATE INDEX appointments_slot ON appointments (slot_id) WHERE status = 'confirmed';

CREATE TABLE booking_attempts (
    attempt_id      uuid PRIMARY KEY,   -- uuid5(token id, Idempotency-Key): same request, same row
    token_id        text NOT NULL,
    event_id        text NOT NULL,
    slot_id         text NOT NULL,
    request_hash    bytea NOT NULL,     -- keyed digest of the request body (idempotency conflicts)
    -- pending: accepted by the API, durable here before it is queued; then exactly one final outcome
    status          text NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected')),
    code            text,
    appointment_id  uuid REFERENCES appointments (appointment_id),
    job             jsonb,              -- the queued job (person data only as ciphertext); cleared when final
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT booking_attempts_final_has_no_job CHECK (status = 'pending' OR job IS NULL)
);
CREATE INDEX booking_attempts_pending ON booking_attempts (created_at) WHERE status = 'pending';

CREATE TABLE audit_log (
    audit_id        bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    action          text NOT NULL,      -- booked | booking_rejected | cancelled
    event_id        text,
    slot_id         uuid,
    appointment_id  uuid,
    attempt_id      uuid,
    actor           text NOT NULL,      -- token id or admin, never a person's identity
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- Append-only: rows can be added, never changed or removed.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
