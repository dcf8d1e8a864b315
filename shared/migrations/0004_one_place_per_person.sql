-- Opt-in per event: a join must carry a person identifier (kept only as a keyed hash, in Redis),
-- and joining again with it returns the same place.
ALTER TABLE events ADD COLUMN one_place_per_person boolean NOT NULL DEFAULT false;
