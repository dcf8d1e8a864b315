-- Optional proof of work on join: leading zero bits the visitor's SHA-256 must show (NULL: none).
ALTER TABLE events ADD COLUMN pow_difficulty integer CHECK (pow_difficulty IS NULL OR pow_difficulty BETWEEN 1 AND 32);
