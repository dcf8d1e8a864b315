-- Who cancelled an appointment is one of two values (shared/statuses.py: CancelledBy), now checked.
ALTER TABLE appointments
    ADD CONSTRAINT appointments_cancelled_by_check CHECK (cancelled_by IS NULL OR cancelled_by IN ('person', 'site'));
