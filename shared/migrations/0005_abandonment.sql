-- Seconds a waiting visitor may go without polling (beyond the interval they were told to wait)
-- before the serving position passes over them; NULL disables abandonment for the event.
ALTER TABLE events ADD COLUMN abandon_after_s integer DEFAULT 300 CHECK (abandon_after_s IS NULL OR abandon_after_s > 0);
