-- Support look-ups (issue 11, "Support without exposure"): find a person's records by their keyed
-- reference alone, never by decrypting everything.
--
-- A booking attempt keeps its person's keyed reference after it ends (the job that carried it is
-- cleared then), so a refused attempt ("already_booked", "slot_full") can still be found for the
-- person who made it. Written by ACCEPT_ATTEMPT from the job itself; NULL only for attempts that
-- ended before this migration and never booked (nothing left to link them to a person).
ALTER TABLE booking_attempts ADD COLUMN person_ref bytea;
UPDATE booking_attempts SET person_ref = decode(job->>'person_ref', 'hex') WHERE job ? 'person_ref';
UPDATE booking_attempts a SET person_ref = ap.person_ref
FROM appointments ap WHERE ap.appointment_id = a.appointment_id AND a.person_ref IS NULL;

CREATE INDEX booking_attempts_person ON booking_attempts (person_ref) WHERE person_ref IS NOT NULL;
-- The existing indexes on person_ref are partial (confirmed appointments, waiting entries) or lead
-- with another column: a look-up of everything a person ever did needs its own.
CREATE INDEX appointments_person ON appointments (person_ref);
CREATE INDEX waitlist_entries_person ON waitlist_entries (person_ref);
