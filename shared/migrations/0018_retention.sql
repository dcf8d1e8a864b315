-- Keeping less (issue 11): a person's name, email and birth date are erased a configured number of
-- days after their appointment by destroying the ciphertext that holds them. The row stays (counts,
-- the audit's references and person_ref go on working); erased_at says when its details went.
ALTER TABLE appointments ALTER COLUMN person_sealed DROP NOT NULL,
    ADD COLUMN erased_at timestamptz,
    ADD CONSTRAINT appointments_erased_has_no_details CHECK ((person_sealed IS NULL) = (erased_at IS NOT NULL));
ALTER TABLE waitlist_entries ALTER COLUMN person_sealed DROP NOT NULL,
    ADD COLUMN erased_at timestamptz,
    ADD CONSTRAINT waitlist_entries_erased_has_no_details CHECK ((person_sealed IS NULL) = (erased_at IS NOT NULL));
ALTER TABLE notifications ALTER COLUMN sealed DROP NOT NULL,
    ADD COLUMN erased_at timestamptz,
    ADD CONSTRAINT notifications_erased_has_no_details CHECK ((sealed IS NULL) = (erased_at IS NOT NULL));

-- What the retention job looks for: rows still holding details (once erased, out of the index).
CREATE INDEX appointments_sealed ON appointments (slot_id) WHERE person_sealed IS NOT NULL;
CREATE INDEX waitlist_entries_sealed ON waitlist_entries (day) WHERE person_sealed IS NOT NULL;
CREATE INDEX notifications_sealed ON notifications (created_at) WHERE sealed IS NOT NULL;
