-- Columns nothing ever wrote or read. booking_attempts.hold_id was added with holds (0009), but the
-- hold an attempt books travels in its job (shared/booking.py BookingJob.hold_id) and is pinned on
-- the hold itself (holds.pinned_attempt), so the column stayed NULL in every row.
ALTER TABLE booking_attempts DROP COLUMN IF EXISTS hold_id;
