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


# --- schedules (shared/schedules.py) ---
# Named SCHEDULE_* so they cannot collide with the seat and waitlist statements above.

SCHEDULE_SITE_ZONE = "SELECT timezone FROM sites WHERE site_id = $1"

SCHEDULE_TYPE = "SELECT * FROM appointment_types WHERE type_id = $1"

SCHEDULE_WEEKLY = "SELECT weekday, intervals FROM schedules WHERE site_id = $1 AND type_id = $2"

# A type's own override comes after the site-wide one ('' sorts first), so a reader keeping the
# last row per day lets the type's own win.
SCHEDULE_OVERRIDES = """
SELECT day, type_id, intervals FROM schedule_overrides WHERE site_id = $1 AND type_id IN ('', $2)
ORDER BY day, type_id
"""

# Every type a site generates slots for: those with a schedule, and those whose schedule was removed
# but whose generated slots remain (so regeneration can withdraw them).
SCHEDULE_TYPES_OF_SITE = """
SELECT DISTINCT type_id FROM schedules WHERE site_id = $1
UNION SELECT DISTINCT type_id FROM slots WHERE site_id = $1 AND generated AND type_id IS NOT NULL
"""

# Generated slots of (site, type) starting in [$3, $4) and after $5 (now).
SCHEDULE_EXISTING_SLOTS = """
SELECT slot_id FROM slots
WHERE site_id = $1 AND type_id = $2 AND generated AND starts_at >= $3 AND starts_at < $4 AND starts_at > $5
"""

# Ids are deterministic (shared.schedules.slot_id_for), so inserting an existing slot changes nothing.
SCHEDULE_INSERT_SLOTS = """
INSERT INTO slots (slot_id, site_id, type_id, starts_at, ends_at, capacity, generated)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[]),
       (VALUES (true)) AS g(generated)
ON CONFLICT (slot_id) DO NOTHING
"""

SCHEDULE_SET_CAPACITY = "UPDATE slots SET capacity = $2 WHERE slot_id = ANY($1::uuid[])"

SCHEDULE_WITHDRAW_SLOTS = "UPDATE slots SET withdrawn_at = $2 WHERE slot_id = ANY($1::uuid[])"

SCHEDULE_RESTORE_SLOTS = "UPDATE slots SET withdrawn_at = NULL WHERE slot_id = ANY($1::uuid[])"
