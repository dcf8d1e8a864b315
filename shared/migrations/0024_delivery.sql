-- Delivering the outbox (issue 9): notifications are claimed by the worker's dispatcher with a lease,
-- sent, and retried with backoff until a budget runs out (then 'failed', the dead letter). A message
-- tied to an appointment that changed after it was queued is 'cancelled' instead of sent.
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_status_check;
ALTER TABLE notifications
    ADD COLUMN due_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    ADD COLUMN channel         text NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'sms')),
    ADD COLUMN language        text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'es')),
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz,        -- NULL: due_at decides
    ADD COLUMN lease_until     timestamptz,        -- claimed by a dispatcher until then (status 'sending')
    ADD COLUMN last_error      text,               -- an exception class and SMTP/HTTP code, never personal data
    ADD COLUMN message_id      text,
    ADD COLUMN person_ref      bytea,              -- whose (for reminder opt-out); NULL when unknown
    ADD COLUMN appointment_sequence integer,       -- the appointment's sequence it was queued for
    ADD CONSTRAINT notifications_status_check
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled'));
DROP INDEX IF EXISTS notifications_queued;
-- What the dispatcher claims: queued and due, or sending with an expired lease.
CREATE INDEX notifications_due ON notifications (coalesce(next_attempt_at, due_at))
    WHERE status IN ('queued', 'sending');
CREATE INDEX notifications_appointment ON notifications (appointment_id) WHERE status IN ('queued', 'sending');

ALTER TABLE appointments
    ADD COLUMN language text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'es')),
    ADD COLUMN sequence integer NOT NULL DEFAULT 0;   -- the calendar file's SEQUENCE: +1 per reschedule

ALTER TABLE sites ADD COLUMN address text;

-- People who asked for no reminders (one-click List-Unsubscribe, RFC 8058); keyed by the person's
-- keyed hash, so nothing readable is kept. Transactional messages still go.
CREATE TABLE reminder_opt_outs (
    person_ref  bytea PRIMARY KEY,
    opted_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
