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

# --- the outbox's dispatcher (booking_worker/dispatcher.py) ---------------------------------------

# Claim due messages: queued and due, or claimed by a dispatcher whose lease ran out (it died). Each
# is locked while claimed (SKIP LOCKED: two dispatchers take disjoint batches) and leased until
# $2 (next_attempt_at), so none is sent by two at once. With each, what the message says about its
# appointment as it stands now, and whether the person opted out of reminders.
CLAIM_NOTIFICATIONS = """
WITH due AS (
    SELECT notification_id FROM notifications
    WHERE status IN ('queued', 'sending') AND coalesce(next_attempt_at, due_at) <= $1 AND channel = ANY($4::text[])
    ORDER BY coalesce(next_attempt_at, due_at)
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE notifications n SET status = 'sending', next_attempt_at = $2, attempts = n.attempts + 1
    FROM due WHERE n.notification_id = due.notification_id
    RETURNING n.*
)
SELECT c.notification_id, c.kind, c.channel, c.language, c.sealed, c.attempts, c.due_at, c.appointment_id,
       c.appointment_sequence, a.status AS appointment_status, a.sequence, s.starts_at, s.ends_at,
       si.name AS site_name, si.address, si.timezone, t.name AS type_name,
       EXISTS (SELECT 1 FROM reminder_opt_outs o WHERE o.person_ref = c.person_ref) AS opted_out
FROM claimed c
LEFT JOIN appointments a ON a.appointment_id = c.appointment_id
LEFT JOIN slots s ON s.slot_id = a.slot_id
LEFT JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
ORDER BY c.notification_id
"""

# $2: the attempts count it was claimed with, so a dispatcher whose lease ran out (and whose message
# another one claimed meanwhile) changes nothing.
MARK_NOTIFICATION_SENT = """
UPDATE notifications SET status = 'sent', sent_at = $3, next_attempt_at = NULL, message_id = $4, last_error = NULL
WHERE notification_id = $1 AND status = 'sending' AND attempts = $2
"""

MARK_NOTIFICATION_RETRY = """
UPDATE notifications SET status = 'queued', next_attempt_at = $3, last_error = $4
WHERE notification_id = $1 AND status = 'sending' AND attempts = $2
"""

MARK_NOTIFICATION_FAILED = """
UPDATE notifications SET status = 'failed', next_attempt_at = NULL, last_error = $3
WHERE notification_id = $1 AND status = 'sending' AND attempts = $2
"""

MARK_NOTIFICATION_CANCELLED = """
UPDATE notifications SET status = 'cancelled', next_attempt_at = NULL, last_error = $2
WHERE notification_id = $1
"""

NOTIFICATION_BACKLOG = """
SELECT count(*) AS due, coalesce(extract(epoch FROM $1 - min(due_at)), 0)::float8 AS oldest_age
FROM notifications WHERE status IN ('queued', 'sending') AND due_at <= $1
"""
