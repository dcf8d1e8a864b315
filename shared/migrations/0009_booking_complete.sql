-- Booking, complete: appointment types, weekly schedules and date overrides per site, slots generated
-- from them, holds, appointment statuses and cancel policy, idempotency keys, waitlist and offers,
-- and a notification outbox.
--
-- The capacity guard remains one rule, applied by shared/seats.py under the slot's row lock:
--     booked + (holds that are active and unexpired, or pinned by an accepted attempt) <= capacity
-- and the CHECK on slots.booked stays as the last line of defence.

CREATE TABLE appointment_types (
    type_id                 text PRIMARY KEY CHECK (type_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    name                    text NOT NULL,
    duration_minutes        integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    seats_per_slot          integer NOT NULL DEFAULT 1 CHECK (seats_per_slot BETWEEN 1 AND 100000),
    buffer_minutes          integer NOT NULL DEFAULT 0 CHECK (buffer_minutes BETWEEN 0 AND 1440),
    min_notice_minutes      integer NOT NULL DEFAULT 0 CHECK (min_notice_minutes >= 0),
    max_advance_days        integer NOT NULL DEFAULT 60 CHECK (max_advance_days BETWEEN 1 AND 730),
    cancel_cutoff_minutes   integer NOT NULL DEFAULT 0 CHECK (cancel_cutoff_minutes >= 0),
    no_show_grace_minutes   integer NOT NULL DEFAULT 30 CHECK (no_show_grace_minutes >= 0),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- Weekly opening hours of a site for one appointment type: per ISO weekday (1 = Monday) a list of
-- [start_minute, end_minute] pairs of local wall time, 0..1440 (1440 = midnight at the day's end).
CREATE TABLE schedules (
    site_id     text NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
    type_id     text NOT NULL REFERENCES appointment_types (type_id),
    weekday     smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    intervals   jsonb NOT NULL,
    PRIMARY KEY (site_id, type_id, weekday)
);

-- A date's hours replacing the weekly ones (an empty list: closed that day). type_id '' = every type.
CREATE TABLE schedule_overrides (
    site_id     text NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
    day         date NOT NULL,              -- the site's local date
    type_id     text NOT NULL DEFAULT '',
    intervals   jsonb NOT NULL,
    note        text,
    PRIMARY KEY (site_id, day, type_id)
);

ALTER TABLE slots
    ADD COLUMN type_id text REFERENCES appointment_types (type_id),
    ADD COLUMN generated boolean NOT NULL DEFAULT false,
    -- no longer offered (its schedule changed or its day was closed); kept because rows refer to it
    ADD COLUMN withdrawn_at timestamptz;
CREATE INDEX slots_site_type_starts ON slots (site_id, type_id, starts_at) WHERE withdrawn_at IS NULL;
CREATE INDEX slots_starts ON slots (starts_at) WHERE withdrawn_at IS NULL;

-- A seat set aside for a while: for an admission (token_id) or for a waitlist offer (offer_id).
-- Counts against capacity while active and unexpired, or while an accepted booking attempt has
-- pinned it (the attempt then consumes or releases it); expiry needs no sweeper to take effect.
CREATE TABLE holds (
    hold_id         uuid PRIMARY KEY,
    slot_id         uuid NOT NULL REFERENCES slots (slot_id),
    token_id        text,
    event_id        text,
    offer_id        uuid,
    expires_at      timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'released', 'replaced', 'consumed', 'expired', 'claimed')),
    pinned_attempt  uuid,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at        timestamptz,
    CONSTRAINT holds_owner CHECK ((token_id IS NULL) <> (offer_id IS NULL))
);
CREATE INDEX holds_slot_active ON holds (slot_id) WHERE status = 'active';
CREATE INDEX holds_active_expiry ON holds (expires_at) WHERE status = 'active';
-- one active hold per admission
CREATE UNIQUE INDEX holds_one_per_admission ON holds (token_id) WHERE status = 'active';

ALTER TABLE booking_attempts ADD COLUMN hold_id uuid;

ALTER TABLE appointments DROP CONSTRAINT appointments_status_check;
ALTER TABLE appointments
    ADD CONSTRAINT appointments_status_check CHECK (status IN ('confirmed', 'cancelled', 'completed', 'no_show')),
    ADD COLUMN cancel_late boolean,
    ADD COLUMN cancel_reason text,
    ADD COLUMN cancelled_by text,
    ADD COLUMN checked_in_at timestamptz,
    ADD COLUMN rescheduled_at timestamptz;

-- Idempotency of the synchronous POSTs (holds, reschedule, waitlist, claims): scoped to the admission
-- token, kept 24 h. Bookings keep theirs in booking_attempts.
CREATE TABLE idempotency_keys (
    token_id        text NOT NULL,
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    response_status integer NOT NULL,
    response_body   jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Waiting for a seat at a site on a local day (day NULL: any day; the rebooking claim of a person
-- whose appointment an operator cancelled) for an appointment type. priority 0 comes before 1.
CREATE TABLE waitlist_entries (
    entry_id        uuid PRIMARY KEY,
    event_id        text NOT NULL REFERENCES events (event_id),
    site_id         text NOT NULL REFERENCES sites (site_id),
    type_id         text NOT NULL REFERENCES appointment_types (type_id),
    day             date,
    priority        smallint NOT NULL DEFAULT 1,
    person_ref      bytea NOT NULL,
    person_sealed   bytea NOT NULL,     -- how to reach them, encrypted
    token_id        text,               -- the admission that joined (NULL for an operator's rebooking claim)
    status          text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'claimed', 'left')),
    joined_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at        timestamptz
);
CREATE UNIQUE INDEX waitlist_one_per_person
    ON waitlist_entries (site_id, type_id, coalesce(day, 'infinity'::date), person_ref) WHERE status = 'waiting';
CREATE INDEX waitlist_queue ON waitlist_entries (site_id, type_id, priority, joined_at) WHERE status = 'waiting';

-- One freed seat offered to the first N waiting entries; its seat is held by holds.offer_id.
CREATE TABLE waitlist_offers (
    offer_id        uuid PRIMARY KEY,
    slot_id         uuid NOT NULL REFERENCES slots (slot_id),
    expires_at      timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'lapsed')),
    claimed_by      uuid,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX waitlist_offers_open ON waitlist_offers (expires_at) WHERE status = 'open';
CREATE TABLE waitlist_offer_recipients (
    offer_id    uuid NOT NULL REFERENCES waitlist_offers (offer_id),
    entry_id    uuid NOT NULL REFERENCES waitlist_entries (entry_id),
    PRIMARY KEY (offer_id, entry_id)
);
CREATE INDEX waitlist_offer_recipients_entry ON waitlist_offer_recipients (entry_id);

-- Messages to people, queued in the transaction that caused them. The payload is encrypted: it
-- holds the address and, for offers, the claim link.
CREATE TABLE notifications (
    notification_id bigserial PRIMARY KEY,
    kind            text NOT NULL,      -- waitlist_offer | cancelled_by_site | rescheduled ...
    appointment_id  uuid,
    entry_id        uuid,
    sealed          bytea NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at         timestamptz
);
CREATE INDEX notifications_queued ON notifications (created_at) WHERE status = 'queued';
