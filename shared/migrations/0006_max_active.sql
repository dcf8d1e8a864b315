-- Optional cap on admissions out and unused at once (admitted, not yet booked, not yet expired).
ALTER TABLE events ADD COLUMN max_active integer CHECK (max_active IS NULL OR max_active > 0);
