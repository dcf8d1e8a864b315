"""SQL of the booking worker. Named statements with $n placeholders; callers own the transaction.

The attempt's own statements are the booking domain's (shared/queries.py, used by shared/attempts.py).
"""

# Accepted attempts whose job may have been lost (Redis restarted without its data, say).
STALE_PENDING = """
SELECT attempt_id, job FROM booking_attempts
WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
ORDER BY created_at
LIMIT $2
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
