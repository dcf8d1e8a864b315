-- An operator's emergency stop (issue 12): while bookings_frozen, the event admits nobody (as paused)
-- and the booking API refuses new bookings of its admissions (503 bookings_frozen, Retry-After).
ALTER TABLE events ADD COLUMN bookings_frozen boolean NOT NULL DEFAULT false;
ALTER TABLE events ADD COLUMN freeze_reason text CHECK (freeze_reason IS NULL OR length(freeze_reason) <= 500);
