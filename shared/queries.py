"""SQL used by more than one process. Named statements; callers own the transaction."""

# Accept an attempt: durable before it is queued. Inserts nothing if the attempt id exists.
ACCEPT_ATTEMPT = """
INSERT INTO booking_attempts (attempt_id, token_id, event_id, slot_id, request_hash, status, job)
VALUES ($1, $2, $3, $4, $5, 'pending', $6)
ON CONFLICT (attempt_id) DO NOTHING
RETURNING true
"""

# An attempt with what the client needs to hear again (appointment, slot, site: NULL if rejected).
ATTEMPT_OUTCOME = """
SELECT a.attempt_id, a.status, a.code, a.request_hash, a.event_id, a.appointment_id, a.slot_id, a.token_id,
       s.site_id, s.starts_at, si.timezone
FROM booking_attempts a
LEFT JOIN appointments ap ON ap.appointment_id = a.appointment_id
LEFT JOIN slots s ON s.slot_id = ap.slot_id
LEFT JOIN sites si ON si.site_id = s.site_id
WHERE a.attempt_id = $1
"""

INSERT_AUDIT = """
INSERT INTO audit_log (action, event_id, slot_id, appointment_id, attempt_id, actor, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

# Idempotency keys of the synchronous POSTs are kept this long (admission/idempotency.py).
IDEMPOTENCY_KEPT_HOURS = 24
PURGE_IDEMPOTENCY_KEYS = "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)"
