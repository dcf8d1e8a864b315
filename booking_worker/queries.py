"""SQL of the booking worker. Named statements with $n placeholders; callers own the transaction."""

# Claims the attempt: the row lock makes concurrent executions of one attempt run one at a time;
# whoever comes second sees the first one's final status and changes nothing.
LOCK_ATTEMPT = "SELECT status FROM booking_attempts WHERE attempt_id = $1 FOR UPDATE"

FINISH_ATTEMPT = """
UPDATE booking_attempts SET status = $2, code = $3, appointment_id = $4, job = NULL, finished_at = now()
WHERE attempt_id = $1
"""

# Accepted attempts whose job may have been lost (Redis restarted without its data, say).
STALE_PENDING = """
SELECT attempt_id, job FROM booking_attempts
WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
ORDER BY created_at
LIMIT $2
"""

SLOT_WITH_SITE = """
SELECT s.slot_id, s.site_id, s.starts_at, si.timezone
FROM slots s JOIN sites si ON si.site_id = s.site_id
WHERE s.slot_id = $1
"""

# Fast, lock-free answers for doomed attempts; the unique indexes remain the guard under races.
PRIOR_BOOKINGS = """
SELECT EXISTS (SELECT 1 FROM appointments WHERE token_id = $1) AS admission_used,
       EXISTS (SELECT 1 FROM appointments
               WHERE event_id = $2 AND person_ref = $3 AND status = 'confirmed') AS already_booked
"""

# The capacity guard: the row lock serialises concurrent takers, and the condition is re-checked
# on the locked row, so a seat is taken only while one is free. Never read-then-write.
TAKE_SEAT = """
UPDATE slots SET booked = booked + 1
WHERE slot_id = $1 AND booked < capacity
RETURNING booked
"""

INSERT_APPOINTMENT = """
INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)
VALUES ($1, $2, $3, $4, $5, $6, 'confirmed')
"""
