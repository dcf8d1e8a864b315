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

# Everything the attempt must know before it takes a seat, in one round trip: the slot, its site and
# booking window (NULLs if there is no such slot), and lock-free answers for doomed attempts (token
# already used, person already booked). The unique indexes remain the guard under races.
BEFORE_SEAT = """
SELECT s.slot_id, s.site_id, s.starts_at, s.withdrawn_at, si.timezone, t.min_notice_minutes, t.max_advance_days,
       EXISTS (SELECT 1 FROM appointments WHERE token_id = $2) AS admission_used,
       EXISTS (SELECT 1 FROM appointments
               WHERE event_id = $3 AND person_ref = $4 AND status = 'confirmed') AS already_booked,
       EXISTS (SELECT 1 FROM holds WHERE token_id = $2 AND status = 'active') AS holds_seats
FROM (SELECT 1) AS one
LEFT JOIN slots s ON s.slot_id = $1
LEFT JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
"""

INSERT_APPOINTMENT = """
INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)
VALUES ($1, $2, $3, $4, $5, $6, 'confirmed')
"""

# --- periodic jobs (booking_worker/periodic.py) ---

# Confirmed appointments whose slot ended longer ago than the type's grace period (30 min untyped).
NO_SHOWS = """
UPDATE appointments ap SET status = 'no_show'
FROM slots s LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE ap.slot_id = s.slot_id AND ap.status = 'confirmed'
  AND s.ends_at + make_interval(mins => coalesce(t.no_show_grace_minutes, 30)) < $1
RETURNING ap.appointment_id, ap.event_id, ap.slot_id
"""

# Every (site, type) with a weekly schedule: what extend_schedules regenerates.
SCHEDULED_PAIRS = "SELECT DISTINCT site_id, type_id FROM schedules ORDER BY site_id, type_id"
