"""SQL of the shared booking domain (seats, attempts, appointments, waitlist, closures) and of what
more than one process runs. Named statements with $n placeholders; callers own the transaction.

Statuses in the statements are the values of :mod:`shared.statuses` (a test keeps both equal to the
schema's CHECK constraints).
"""


def live_holds(now_param: str) -> str:
    """SQL: the live holds of slot ``s`` at the instant in parameter ``now_param`` (e.g. "$2").
    The one definition of what a hold takes from availability; every availability query uses it."""
    live = f"h.expires_at > {now_param} OR h.pinned_attempt IS NOT NULL"
    return f"(SELECT count(*) FROM holds h WHERE h.slot_id = s.slot_id AND h.status = 'active' AND ({live}))"


_HELD = live_holds("$2")

# --- seats and holds (shared/seats.py) ------------------------------------------------------------

LOCK_SLOTS = "SELECT slot_id FROM slots WHERE slot_id = ANY($1::uuid[]) ORDER BY slot_id FOR UPDATE"

SLOT_STATE = f"""
SELECT s.slot_id, s.site_id, s.type_id, s.starts_at, s.ends_at, s.capacity, s.booked, s.withdrawn_at,
       si.timezone, t.min_notice_minutes, t.max_advance_days, t.cancel_cutoff_minutes,
       {_HELD} AS held
FROM slots s
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE s.slot_id = ANY($1::uuid[])
"""

SITE_OF_SLOT = "SELECT site_id FROM slots WHERE slot_id = $1"

# After LOCK_SLOTS: a seat is taken only while booked + live holds leave one free.
TAKE_SEAT = f"""
UPDATE slots s SET booked = booked + 1
WHERE s.slot_id = $1 AND s.withdrawn_at IS NULL AND s.booked + {_HELD} < s.capacity
RETURNING booked
"""

# After LOCK_SLOTS, for a seat already counted by a hold that is being consumed in the same transaction.
TAKE_HELD_SEAT = """
UPDATE slots SET booked = booked + 1
WHERE slot_id = $1 AND withdrawn_at IS NULL AND booked < capacity
RETURNING booked
"""

RETURN_SEAT = "UPDATE slots SET booked = booked - 1 WHERE slot_id = $1 RETURNING booked"

INSERT_HOLD = """
INSERT INTO holds (hold_id, slot_id, token_id, event_id, offer_id, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""

# The admission's live hold is replaced by a new one (a pinned hold belongs to a booking in flight).
REPLACE_HOLDS = """
UPDATE holds h SET status = 'replaced', ended_at = $2
FROM slots s
WHERE h.token_id = $1 AND h.status = 'active' AND h.pinned_attempt IS NULL AND s.slot_id = h.slot_id
RETURNING s.site_id, h.hold_id
"""

PINNED_HOLD_OF = "SELECT 1 FROM holds WHERE token_id = $1 AND status = 'active' AND pinned_attempt IS NOT NULL"

# How many holds the admission has placed, whatever became of them, counted up to $2 (the cap).
HOLDS_PLACED_BY = "SELECT count(*) FROM (SELECT 1 FROM holds WHERE token_id = $1 LIMIT $2) placed"

RELEASE_HOLD = """
UPDATE holds SET status = 'released', ended_at = $3
WHERE hold_id = $1 AND token_id = $2 AND status = 'active' AND pinned_attempt IS NULL
RETURNING slot_id
"""

GET_HOLD = "SELECT hold_id, slot_id, token_id, expires_at, status, pinned_attempt FROM holds WHERE hold_id = $1"

SLOT_OF_HOLD = "SELECT slot_id FROM holds WHERE hold_id = $1"

# Pin a live hold to an accepted booking attempt: from now on only that attempt consumes or releases it.
PIN_HOLD = """
UPDATE holds SET pinned_attempt = $3
WHERE hold_id = $1 AND token_id = $2 AND status = 'active'
  AND (pinned_attempt = $3 OR (pinned_attempt IS NULL AND expires_at > $4))
RETURNING slot_id
"""

CONSUME_HOLD = """
UPDATE holds SET status = 'consumed', ended_at = $3
WHERE hold_id = $1 AND token_id = $4 AND status = 'active'
  AND (pinned_attempt = $2 OR (pinned_attempt IS NULL AND expires_at > $3))
RETURNING slot_id
"""

UNPIN_HOLD = """
UPDATE holds SET status = 'released', ended_at = $3
WHERE hold_id = $1 AND pinned_attempt = $2 AND status = 'active'
"""

# The attempt gives the hold back to its admission, still live until its own expiry.
UNPIN_HOLD_KEEP = """
UPDATE holds SET pinned_attempt = NULL WHERE hold_id = $1 AND pinned_attempt = $2 AND status = 'active'
"""

RELEASE_ADMISSION_HOLDS = """
UPDATE holds SET status = 'released', ended_at = $2
WHERE token_id = $1 AND status = 'active' AND pinned_attempt IS NULL
"""

# Tidying only: availability already ignores expired holds.
EXPIRE_HOLDS = """
WITH gone AS (
    SELECT hold_id FROM holds
    WHERE status = 'active' AND pinned_attempt IS NULL AND expires_at <= $1
    ORDER BY expires_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE holds h SET status = 'expired', ended_at = h.expires_at
FROM gone WHERE h.hold_id = gone.hold_id
RETURNING h.slot_id
"""

# What an admission's appointment is (None: it has none); a hold may be placed while it is confirmed.
APPOINTMENT_STATUS_OF_ADMISSION = "SELECT status FROM appointments WHERE token_id = $1"

# --- booking attempts (shared/attempts.py) -------------------------------------------------------

# Claims the attempt: the row lock makes concurrent executions of one attempt run one at a time;
# whoever comes second sees the first one's final status and changes nothing.
LOCK_ATTEMPT = "SELECT status, job FROM booking_attempts WHERE attempt_id = $1 FOR UPDATE"

FINISH_ATTEMPT = """
UPDATE booking_attempts SET status = $2, code = $3, appointment_id = $4, job = NULL, finished_at = now()
WHERE attempt_id = $1
"""

# Everything the attempt must know before it takes a seat, in one round trip: the slot, its site and
# booking window (NULLs if there is no such slot), and lock-free answers for doomed attempts (token
# already used, person already booked in the event's program, an admission from a waitlist claim used
# for someone other than the entry's person). The unique indexes remain the guard under races; the
# claim's person cannot race (an entry's person and its claim's admission never change).
BEFORE_SEAT = """
SELECT s.slot_id, s.site_id, s.starts_at, s.ends_at, s.withdrawn_at, si.timezone,
       t.min_notice_minutes, t.max_advance_days,
       EXISTS (SELECT 1 FROM appointments WHERE token_id = $2) AS admission_used,
       EXISTS (SELECT 1 FROM appointments a JOIN events e ON e.program_id = a.program_id
               WHERE e.event_id = $3 AND a.person_ref = $4 AND a.status = 'confirmed') AS already_booked,
       EXISTS (SELECT 1 FROM waitlist_entries
               WHERE claim_token_id = $2 AND person_ref <> $4) AS claimed_for_another_person,
       EXISTS (SELECT 1 FROM holds WHERE token_id = $2 AND status = 'active') AS holds_seats
FROM (SELECT 1) AS one
LEFT JOIN slots s ON s.slot_id = $1
LEFT JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
"""

# program_id is filled in from the event by the database (trigger appointments_program_of_event).
INSERT_APPOINTMENT = """
INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status, language)
VALUES ($1, $2, $3, $4, $5, $6, 'confirmed', $7)
"""

# --- changes to appointments (shared/appointments.py) ---------------------------------------------

LOCK_APPOINTMENT = """
SELECT appointment_id, event_id, slot_id, status FROM appointments
WHERE appointment_id = $1 AND ($2::text IS NULL OR token_id = $2)
FOR UPDATE
"""

# The appointment, locked, with what a change needs to know of its slot and type.
APPOINTMENT_FOR_CHANGE = """
SELECT ap.appointment_id, ap.event_id, ap.slot_id, ap.status, ap.person_sealed, ap.person_ref, ap.sequence,
       s.site_id, s.starts_at, s.type_id, t.cancel_cutoff_minutes
FROM appointments ap
JOIN slots s ON s.slot_id = ap.slot_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE ap.appointment_id = $1
FOR UPDATE OF ap
"""

MARK_CANCELLED = """
UPDATE appointments SET status = 'cancelled', cancelled_at = $2, cancel_late = $3, cancel_reason = $4, cancelled_by = $5
WHERE appointment_id = $1 AND status = 'confirmed'
"""

# A move is a new version of the appointment for calendars (the .ics SEQUENCE) and for its messages.
MOVE_APPOINTMENT = """
UPDATE appointments SET slot_id = $2, rescheduled_at = $3, sequence = sequence + 1 WHERE appointment_id = $1
RETURNING sequence, person_sealed, person_ref
"""

MARK_COMPLETED = """
UPDATE appointments SET status = 'completed', checked_in_at = $2
WHERE appointment_id = $1 AND status = 'confirmed'
RETURNING event_id, slot_id
"""

APPOINTMENT_STATUS = "SELECT status FROM appointments WHERE appointment_id = $1"

# --- closing a day (shared/closures.py) -----------------------------------------------------------

SITE_TIMEZONE = "SELECT timezone FROM sites WHERE site_id = $1"

CLOSE_DAY_OVERRIDE = """
INSERT INTO schedule_overrides (site_id, day, type_id, intervals, note) VALUES ($1, $2, $3, '[]', $4)
ON CONFLICT (site_id, day, type_id) DO UPDATE SET intervals = '[]', note = EXCLUDED.note
"""

DAY_SLOTS = """
SELECT slot_id FROM slots
WHERE site_id = $1 AND starts_at >= $2 AND starts_at < $3 AND ($4::text IS NULL OR type_id = $4)
  AND withdrawn_at IS NULL
"""

DAY_APPOINTMENTS = """
SELECT ap.appointment_id, ap.event_id, ap.person_ref, ap.person_sealed, s.type_id, s.starts_at
FROM appointments ap JOIN slots s ON s.slot_id = ap.slot_id
WHERE s.site_id = $1 AND s.starts_at >= $2 AND s.starts_at < $3 AND ($4::text IS NULL OR s.type_id = $4)
  AND ap.status = 'confirmed'
ORDER BY ap.appointment_id
FOR UPDATE OF ap
"""

LAPSE_SLOT_OFFERS = "UPDATE waitlist_offers SET status = 'lapsed' WHERE slot_id = ANY($1::uuid[]) AND status = 'open'"

# Offers and holds on closed seats end with them (a hold pinned by a booking in flight stays).
RELEASE_SLOT_HOLDS = """
UPDATE holds SET status = 'released', ended_at = $2
WHERE slot_id = ANY($1::uuid[]) AND status = 'active' AND pinned_attempt IS NULL
"""

WITHDRAW_EMPTY_SLOTS = """
UPDATE slots SET withdrawn_at = $2
WHERE slot_id = ANY($1::uuid[]) AND booked = 0
  AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.slot_id = slots.slot_id AND h.status = 'active')
RETURNING slot_id
"""

# --- waitlist (shared/waitlist.py) ----------------------------------------------------------------

RECIPIENTS = """
SELECT e.entry_id, e.event_id, e.person_sealed FROM waitlist_entries e
WHERE e.site_id = $1 AND e.type_id = $2 AND e.status = 'waiting' AND (e.day IS NULL OR e.day = $3)
  AND e.person_sealed IS NOT NULL  -- erased (shared/retention.py): nobody left to offer a seat to
  AND NOT EXISTS (SELECT 1 FROM waitlist_offer_recipients r JOIN waitlist_offers o ON o.offer_id = r.offer_id
                  WHERE r.entry_id = e.entry_id AND (o.slot_id = $4 OR (o.status = 'open' AND o.expires_at > $5)))
  AND NOT EXISTS (SELECT 1 FROM appointments a JOIN events ev ON ev.program_id = a.program_id
                  WHERE ev.event_id = e.event_id AND a.person_ref = e.person_ref AND a.status = 'confirmed')
ORDER BY e.priority, e.joined_at
LIMIT $6
FOR UPDATE OF e SKIP LOCKED
"""

# Future, offered, typed slots that have a free seat someone on the waitlist could take.
WANTED_SLOTS = f"""
SELECT DISTINCT s.slot_id, s.starts_at FROM waitlist_entries e
JOIN slots s ON s.site_id = e.site_id AND s.type_id = e.type_id AND s.withdrawn_at IS NULL AND s.starts_at > $1
JOIN sites si ON si.site_id = s.site_id
WHERE e.status = 'waiting'
  AND (e.day IS NULL OR e.day = (s.starts_at AT TIME ZONE si.timezone)::date)
  AND s.booked + {live_holds("$1")} < s.capacity
ORDER BY s.starts_at
LIMIT $2
"""

# Free, bookable-by-notice seats of a type at a site on a local day (is it full?).
FREE_ON_DAY = f"""
SELECT count(*) FROM slots s
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE s.site_id = $1 AND s.type_id = $2 AND s.withdrawn_at IS NULL
  AND (s.starts_at AT TIME ZONE si.timezone)::date = $3
  AND s.starts_at > $4::timestamptz + make_interval(mins => coalesce(t.min_notice_minutes, 0))
  AND s.booked + {live_holds("$4")} < s.capacity
"""

LAPSE_OFFERS = """
UPDATE waitlist_offers SET status = 'lapsed'
WHERE status = 'open' AND expires_at <= $1
RETURNING offer_id, slot_id
"""

EXPIRE_OFFER_HOLDS = """
UPDATE holds SET status = 'expired', ended_at = $2 WHERE offer_id = ANY($1::uuid[]) AND status = 'active'
"""

# A person's active appointment in an event, for a lost manage link (shared/manage.py).
ACTIVE_APPOINTMENT_OF_PERSON = """
SELECT ap.appointment_id, ap.person_sealed, s.ends_at
FROM appointments ap JOIN slots s ON s.slot_id = ap.slot_id
WHERE ap.event_id = $1 AND ap.person_ref = $2 AND ap.status = 'confirmed'
ORDER BY ap.created_at DESC
LIMIT 1
"""

# --- the outbox (shared/notifications.py) ---------------------------------------------------------

QUEUE_NOTIFICATION = """
INSERT INTO notifications (kind, appointment_id, entry_id, sealed, due_at, channel, language, person_ref,
                           appointment_sequence)
VALUES ($1, $2, $3, $4, coalesce($5, clock_timestamp()), $6, $7, $8, $9)
RETURNING notification_id
"""

WITHDRAW_TIMED_NOTIFICATIONS = """
UPDATE notifications SET status = 'cancelled', lease_until = NULL
WHERE appointment_id = $1 AND status = 'queued' AND kind = ANY($2::text[])
RETURNING notification_id
"""

APPOINTMENT_PERSON_REF = "SELECT person_ref FROM appointments WHERE appointment_id = $1"

OPT_OUT_REMINDERS = "INSERT INTO reminder_opt_outs (person_ref) VALUES ($1) ON CONFLICT DO NOTHING"

WITHDRAW_REMINDERS_OF_PERSON = """
UPDATE notifications SET status = 'cancelled', lease_until = NULL
WHERE person_ref = $1 AND status = 'queued' AND kind = ANY($2::text[])
"""

INSERT_OFFER = "INSERT INTO waitlist_offers (offer_id, slot_id, expires_at) VALUES ($1, $2, $3)"

INSERT_OFFER_RECIPIENT = "INSERT INTO waitlist_offer_recipients (offer_id, entry_id) VALUES ($1, $2)"

LOCK_OFFER = """
SELECT offer_id, slot_id, expires_at, status, claimed_by FROM waitlist_offers WHERE offer_id = $1 FOR UPDATE
"""

LOCK_OFFER_ENTRY = """
SELECT e.* FROM waitlist_entries e JOIN waitlist_offer_recipients r ON r.entry_id = e.entry_id
WHERE r.offer_id = $1 AND e.entry_id = $2
FOR UPDATE OF e
"""

LIVE_HOLD_OF_ADMISSION = """
SELECT hold_id, expires_at FROM holds WHERE token_id = $1 AND status = 'active' AND expires_at > $2
"""

CLAIM_OFFER_HOLD = "UPDATE holds SET status = 'claimed', ended_at = $2 WHERE offer_id = $1 AND status = 'active'"

MARK_OFFER_CLAIMED = "UPDATE waitlist_offers SET status = 'claimed', claimed_by = $2 WHERE offer_id = $1"

# The claim's admission is recorded with the entry: it books only for the entry's person.
MARK_ENTRY_CLAIMED = """
UPDATE waitlist_entries SET status = 'claimed', ended_at = $2, claim_token_id = $3 WHERE entry_id = $1
"""

OTHER_RECIPIENTS = """
SELECT e.entry_id, e.person_sealed FROM waitlist_offer_recipients r
JOIN waitlist_entries e ON e.entry_id = r.entry_id
WHERE r.offer_id = $1 AND e.entry_id <> $2 AND e.person_sealed IS NOT NULL
"""

SITE_AND_TYPE_EXIST = """
SELECT EXISTS (SELECT 1 FROM sites WHERE site_id = $1) AND EXISTS (SELECT 1 FROM appointment_types WHERE type_id = $2)
"""

INSERT_ENTRY = """
INSERT INTO waitlist_entries (entry_id, event_id, site_id, type_id, day, priority, person_ref, person_sealed, token_id,
    joined_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (site_id, type_id, coalesce(day, 'infinity'::date), person_ref) WHERE status = 'waiting'
DO NOTHING
RETURNING entry_id, joined_at
"""

WAITING_ENTRY = """
SELECT entry_id, joined_at, priority FROM waitlist_entries
WHERE site_id = $1 AND type_id = $2 AND day IS NOT DISTINCT FROM $3 AND person_ref = $4 AND status = 'waiting'
"""

RAISE_ENTRY_PRIORITY = "UPDATE waitlist_entries SET priority = $2 WHERE entry_id = $1"

ENTRIES_AHEAD = """
SELECT count(*) FROM waitlist_entries
WHERE site_id = $1 AND type_id = $2 AND status = 'waiting'
  AND (day IS NULL OR $3::date IS NULL OR day = $3) AND (priority, joined_at) < ($4, $5)
"""

LEAVE_ENTRY = """
UPDATE waitlist_entries SET status = CASE WHEN status = 'waiting' THEN 'left' ELSE status END,
    ended_at = coalesce(ended_at, now())
WHERE entry_id = $1 AND token_id = $2
RETURNING status, event_id, ended_at = now() AS ended_now
"""

# --- supply: appointment types, schedules, overrides (shared/supply.py) -----------------------------

SITE_EXISTS = "SELECT 1 FROM sites WHERE site_id = $1"

TYPE_EXISTS = "SELECT 1 FROM appointment_types WHERE type_id = $1"

UPSERT_TYPE = """
INSERT INTO appointment_types (type_id, name, duration_minutes, seats_per_slot, buffer_minutes, min_notice_minutes,
    max_advance_days, cancel_cutoff_minutes, no_show_grace_minutes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (type_id) DO UPDATE SET name = EXCLUDED.name, duration_minutes = EXCLUDED.duration_minutes,
    seats_per_slot = EXCLUDED.seats_per_slot, buffer_minutes = EXCLUDED.buffer_minutes,
    min_notice_minutes = EXCLUDED.min_notice_minutes, max_advance_days = EXCLUDED.max_advance_days,
    cancel_cutoff_minutes = EXCLUDED.cancel_cutoff_minutes, no_show_grace_minutes = EXCLUDED.no_show_grace_minutes,
    updated_at = now()
RETURNING *
"""

LIST_TYPES = "SELECT * FROM appointment_types ORDER BY type_id"

DELETE_SCHEDULE = "DELETE FROM schedules WHERE site_id = $1 AND type_id = $2"

INSERT_SCHEDULE_DAY = "INSERT INTO schedules (site_id, type_id, weekday, intervals) VALUES ($1, $2, $3, $4)"

SCHEDULE_DAYS = "SELECT weekday, intervals FROM schedules WHERE site_id = $1 AND type_id = $2"

# A site's overrides for one type: those of the type and those of every type ('').
OVERRIDES_OF = """
SELECT day, type_id, intervals, note FROM schedule_overrides WHERE site_id = $1 AND type_id IN ('', $2) ORDER BY day
"""

UPSERT_OVERRIDE = """
INSERT INTO schedule_overrides (site_id, day, type_id, intervals, note) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (site_id, day, type_id) DO UPDATE SET intervals = EXCLUDED.intervals, note = EXCLUDED.note
"""

DELETE_OVERRIDE = "DELETE FROM schedule_overrides WHERE site_id = $1 AND day = $2 AND type_id = $3 RETURNING 1"

# --- advisory locks (shared/locks.py): key hashed with the namespace as seed ---------------------------

ADVISORY_XACT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))"

ADVISORY_TRY_XACT_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, $2))"

ADVISORY_XACT_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, $2))"

ADVISORY_LOCK = "SELECT pg_advisory_lock(hashtextextended($1, $2))"

ADVISORY_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, $2))"

# --- what more than one process runs ---------------------------------------------------------------

# Accept an attempt: durable before it is queued. Inserts nothing if the attempt id exists. The
# person's keyed ref is kept apart from the job (cleared when the attempt ends) for support look-ups.
ACCEPT_ATTEMPT = """
INSERT INTO booking_attempts (attempt_id, token_id, event_id, slot_id, request_hash, status, job, person_ref)
VALUES ($1, $2, $3, $4, $5, 'pending', $6::jsonb, decode($6::jsonb->>'person_ref', 'hex'))
ON CONFLICT (attempt_id) DO NOTHING
RETURNING true
"""

# An attempt with what the client needs to hear again (appointment, slot, site: NULL if rejected).
ATTEMPT_OUTCOME = """
SELECT a.attempt_id, a.status, a.code, a.request_hash, a.event_id, a.appointment_id, a.slot_id, a.token_id,
       s.site_id, s.starts_at, s.ends_at, si.timezone, a.reasons
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


# --- support look-ups (shared/support.py) ---
# By the person's keyed ref only ($1), optionally one event ($2 NULL: every event). Named SUPPORT_*.

SUPPORT_APPOINTMENTS = """
SELECT ap.appointment_id, ap.event_id, ap.status, ap.created_at, ap.cancelled_at, ap.cancel_late, ap.cancel_reason,
       ap.cancelled_by, ap.checked_in_at, ap.rescheduled_at, ap.person_sealed,
       s.slot_id, s.site_id, s.type_id, s.starts_at, s.ends_at, si.timezone
FROM appointments ap
JOIN slots s ON s.slot_id = ap.slot_id
JOIN sites si ON si.site_id = s.site_id
WHERE ap.person_ref = $1 AND ($2::text IS NULL OR ap.event_id = $2)
ORDER BY ap.created_at DESC, ap.appointment_id
"""

SUPPORT_ATTEMPTS = """
SELECT attempt_id, event_id, slot_id, status, code, appointment_id, created_at, finished_at
FROM booking_attempts
WHERE person_ref = $1 AND ($2::text IS NULL OR event_id = $2)
ORDER BY created_at DESC, attempt_id
"""

SUPPORT_WAITLIST = """
SELECT entry_id, event_id, site_id, type_id, day, priority, status, joined_at, ended_at, person_sealed
FROM waitlist_entries
WHERE person_ref = $1 AND ($2::text IS NULL OR event_id = $2)
ORDER BY joined_at DESC, entry_id
"""

# The sites an appointment's event covers (NULL: every site), for moving it on the person's behalf.
SUPPORT_EVENT_SITES = """
SELECT e.site_ids FROM appointments ap JOIN events e ON e.event_id = ap.event_id WHERE ap.appointment_id = $1
"""

# --- staff (shared/staff.py; issue 11, "Staff and roles") ---

# An active member's key: the name and roles, nothing else (the hash never leaves the database).
STAFF_BY_KEY = "SELECT name, roles FROM staff WHERE key_hash = $1 AND revoked_at IS NULL"

INSERT_STAFF = "INSERT INTO staff (name, roles, key_hash) VALUES ($1, $2, $3)"

REVOKE_STAFF = "UPDATE staff SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING true"

LIST_STAFF = "SELECT name, roles, created_at, revoked_at FROM staff ORDER BY name"

# --- reports (shared/reports.py): aggregates only, never a row per person --------------------------
# Each REPORT_* statement yields one row per counted thing with the same columns (event, region,
# site, day: the site's local date of the appointment or offered slot, type), plus the report's own
# columns (the waitlist's "step"); shared.reports.report_sql groups and counts them. Neither ids of
# people nor their sealed details are ever selected.

_REPORT_PLACE = """si.region, si.site_id AS site, (s.starts_at AT TIME ZONE si.timezone)::date AS day,
       s.type_id AS type"""

# Every appointment ever booked, whatever became of it (as it stands: a rescheduled one counts on its new slot).
REPORT_BOOKINGS = f"""
SELECT a.event_id AS event, {_REPORT_PLACE}
FROM appointments a JOIN slots s ON s.slot_id = a.slot_id JOIN sites si ON si.site_id = s.site_id
"""

REPORT_CANCELLATIONS = REPORT_BOOKINGS + "WHERE a.status = 'cancelled'"

# Every live eligibility evaluation (overrides are support's, not the rules'): its outcome and its
# reasons as one combination ("too_young+outside_region", "none"), so the cells add up to the decisions;
# day = the local date it was evaluated on.
REPORT_ELIGIBILITY = """
SELECT d.event_id AS event, d.as_of AS day, d.outcome,
       CASE WHEN cardinality(d.reasons) = 0 THEN 'none' ELSE array_to_string(d.reasons, '+') END AS reason
FROM eligibility_decisions d WHERE d.kind = 'evaluation'
"""

REPORT_NO_SHOWS = REPORT_BOOKINGS + "WHERE a.status = 'no_show'"

# A freed seat offered to a person (one row per recipient), and an offer claimed (one row per claim).
REPORT_WAITLIST = f"""
SELECT e.event_id AS event, {_REPORT_PLACE}, 'offered' AS step
FROM waitlist_offer_recipients r
JOIN waitlist_offers o ON o.offer_id = r.offer_id
JOIN waitlist_entries e ON e.entry_id = r.entry_id
JOIN slots s ON s.slot_id = o.slot_id JOIN sites si ON si.site_id = s.site_id
UNION ALL
SELECT e.event_id AS event, {_REPORT_PLACE}, 'claimed' AS step
FROM waitlist_offers o
JOIN waitlist_entries e ON e.entry_id = o.claimed_by
JOIN slots s ON s.slot_id = o.slot_id JOIN sites si ON si.site_id = s.site_id
WHERE o.status = 'claimed'
"""

# The filters every report takes, on the columns above: $1 event (NULL: all), $2 and $3 the first
# and last local day (NULL: open), on the counted rows (alias ``counted``).
REPORT_FILTER = """($1::text IS NULL OR counted.event = $1)
  AND ($2::date IS NULL OR counted.day >= $2) AND ($3::date IS NULL OR counted.day <= $3)"""

# --- keeping less (shared/retention.py): erasing person details, re-sealing them under a new key ----
# Each ERASE_* destroys the ciphertext of at most $2 rows that are due ($1: the cut-off moment) and
# returns how many; rows another transaction holds are skipped (SKIP LOCKED) and erased by a later run.

# An appointment: once its slot ended before the cut-off, whatever its status.
ERASE_APPOINTMENTS = """
WITH due AS (
    SELECT ap.appointment_id FROM appointments ap JOIN slots s ON s.slot_id = ap.slot_id
    WHERE ap.person_sealed IS NOT NULL AND s.ends_at < $1
    LIMIT $2
    FOR UPDATE OF ap SKIP LOCKED
)
UPDATE appointments ap SET person_sealed = NULL, erased_at = $3
FROM due WHERE ap.appointment_id = due.appointment_id
"""

# A waitlist entry: once its day (site-local, so a day's margin) is before the cut-off, or once it
# ended (claimed, left) before it. A waiting entry for any day (a rebooking claim) is kept while it waits.
ERASE_WAITLIST_ENTRIES = """
WITH due AS (
    SELECT entry_id FROM waitlist_entries
    WHERE person_sealed IS NOT NULL
      AND (day + 1 < ($1::timestamptz AT TIME ZONE 'UTC')::date OR (status <> 'waiting' AND ended_at < $1))
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE waitlist_entries e SET person_sealed = NULL, erased_at = $3
FROM due WHERE e.entry_id = due.entry_id
"""

# A message (address, claim link): once it was queued before the cut-off.
ERASE_NOTIFICATIONS = """
WITH due AS (
    SELECT notification_id FROM notifications
    WHERE sealed IS NOT NULL AND created_at < $1
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET sealed = NULL, erased_at = $3
FROM due WHERE n.notification_id = due.notification_id
"""

# An eligibility decision's inputs (issue 10): once it was made before the cut-off, unless an
# appointment booked with it still keeps its own details (they go together).
ERASE_DECISION_INPUTS = """
WITH due AS (
    SELECT d.decision_id FROM eligibility_decisions d
    WHERE d.inputs_sealed IS NOT NULL AND d.created_at < $1
      AND NOT EXISTS (SELECT 1 FROM appointments ap
                      WHERE ap.decision_id = d.decision_id AND ap.person_sealed IS NOT NULL)
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE eligibility_decisions d SET inputs_sealed = NULL, erased_at = $3
FROM due WHERE d.decision_id = due.decision_id
"""

# Re-sealing walks each table in key order ($1: the last key of the previous batch, NULL to start),
# locking the batch ($2 rows) so the ciphertext it rewrites is the one it read.
SEALED_APPOINTMENTS = """
SELECT appointment_id AS id, person_sealed AS sealed FROM appointments
WHERE person_sealed IS NOT NULL AND ($1::uuid IS NULL OR appointment_id > $1)
ORDER BY appointment_id LIMIT $2
FOR UPDATE
"""
RESEAL_APPOINTMENTS = """
UPDATE appointments ap SET person_sealed = v.sealed
FROM unnest($1::uuid[], $2::bytea[]) AS v(id, sealed) WHERE ap.appointment_id = v.id
"""

SEALED_WAITLIST_ENTRIES = """
SELECT entry_id AS id, person_sealed AS sealed FROM waitlist_entries
WHERE person_sealed IS NOT NULL AND ($1::uuid IS NULL OR entry_id > $1)
ORDER BY entry_id LIMIT $2
FOR UPDATE
"""
RESEAL_WAITLIST_ENTRIES = """
UPDATE waitlist_entries e SET person_sealed = v.sealed
FROM unnest($1::uuid[], $2::bytea[]) AS v(id, sealed) WHERE e.entry_id = v.id
"""

SEALED_NOTIFICATIONS = """
SELECT notification_id AS id, sealed FROM notifications
WHERE sealed IS NOT NULL AND ($1::bigint IS NULL OR notification_id > $1)
ORDER BY notification_id LIMIT $2
FOR UPDATE
"""
RESEAL_NOTIFICATIONS = """
UPDATE notifications n SET sealed = v.sealed
FROM unnest($1::bigint[], $2::bytea[]) AS v(id, sealed) WHERE n.notification_id = v.id
"""

SEALED_DECISION_INPUTS = """
SELECT decision_id AS id, inputs_sealed AS sealed FROM eligibility_decisions
WHERE inputs_sealed IS NOT NULL AND ($1::uuid IS NULL OR decision_id > $1)
ORDER BY decision_id LIMIT $2
FOR UPDATE
"""
RESEAL_DECISION_INPUTS = """
UPDATE eligibility_decisions d SET inputs_sealed = v.sealed
FROM unnest($1::uuid[], $2::bytea[]) AS v(id, sealed) WHERE d.decision_id = v.id
"""

# Accepted attempts not yet executed carry the person's ciphertext in their stored job (a final
# attempt's job is gone: booking_attempts_final_has_no_job).
SEALED_PENDING_JOBS = """
SELECT attempt_id AS id, convert_to(job->>'person_sealed', 'UTF8') AS sealed FROM booking_attempts
WHERE status = 'pending' AND job ? 'person_sealed' AND ($1::uuid IS NULL OR attempt_id > $1)
ORDER BY attempt_id LIMIT $2
FOR UPDATE
"""
RESEAL_PENDING_JOBS = """
UPDATE booking_attempts a SET job = jsonb_set(a.job, '{person_sealed}', to_jsonb(convert_from(v.sealed, 'UTF8')))
FROM unnest($1::uuid[], $2::bytea[]) AS v(id, sealed) WHERE a.attempt_id = v.id AND a.status = 'pending'
"""


# --- audit chain (shared/audit.py) ---
# Named AUDIT_* next to INSERT_AUDIT above, the one statement request paths write audit rows with.

# The chain's head: the last sealed row.
AUDIT_HEAD = "SELECT seq, audit_id, row_hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"

# Unsealed rows older than the margin ($1 seconds, by the database's clock), in audit_id order.
AUDIT_UNSEALED = """
SELECT * FROM audit_log
WHERE seq IS NULL AND at < clock_timestamp() - make_interval(secs => $1)
ORDER BY audit_id
LIMIT $2
"""

AUDIT_SEAL = """
UPDATE audit_log a SET seq = s.seq, prev_hash = s.prev_hash, row_hash = s.row_hash
FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS s(audit_id, seq, prev_hash, row_hash)
WHERE a.audit_id = s.audit_id AND a.seq IS NULL
"""

AUDIT_LAST_CHECKPOINT = "SELECT * FROM audit_checkpoints ORDER BY checkpoint_id DESC LIMIT 1"

AUDIT_INSERT_CHECKPOINT = """
INSERT INTO audit_checkpoints (seq, audit_id, head_hash, signed_at, key_id, signature)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *
"""

AUDIT_CHECKPOINTS = "SELECT * FROM audit_checkpoints ORDER BY checkpoint_id"

AUDIT_CHECKPOINTS_SINCE = "SELECT * FROM audit_checkpoints WHERE signed_at >= $1 ORDER BY checkpoint_id"

# The sealed chain in order (verify walks it with a cursor).
AUDIT_CHAIN = "SELECT * FROM audit_log WHERE seq IS NOT NULL ORDER BY seq"

AUDIT_CHAIN_SINCE = "SELECT * FROM audit_log WHERE seq IS NOT NULL AND at >= $1 ORDER BY seq"

AUDIT_UNSEALED_COUNT = "SELECT count(*) FROM audit_log WHERE seq IS NULL"

# --- audit partitions (shared/partitions.py, migration 0029) ---

# Keep a partition of $1 ids ahead of the last audit_id handed out; returns how many were created.
AUDIT_PARTITIONS_AHEAD = "SELECT audit_log_partitions_ahead($1)"

# The range partitions of audit_log, lowest ids first (the default partition is not listed).
AUDIT_PARTITIONS = "SELECT name, lower_id, upper_id FROM audit_log_partitions ORDER BY lower_id"

# What a partition holds, for archiving it: rows, unsealed rows, its seq span and its last sealed row.
# (The partition's name comes from AUDIT_PARTITIONS, never from a caller: it is quoted as an identifier.)
AUDIT_PARTITION_SPAN = """
SELECT count(*) AS rows, count(*) FILTER (WHERE seq IS NULL) AS unsealed, min(seq) AS first_seq, max(seq) AS last_seq,
       (array_agg(audit_id ORDER BY seq DESC) FILTER (WHERE seq IS NOT NULL))[1] AS last_audit_id,
       (array_agg(row_hash ORDER BY seq DESC) FILTER (WHERE seq IS NOT NULL))[1] AS last_row_hash
FROM {partition}
"""

# The last id handed out (what counts as a partition being full).
AUDIT_LAST_ID = "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM audit_log_audit_id_seq"

# Where the chain continues after the archived partitions (None: nothing archived, it starts at seq 1),
# named as AUDIT_HEAD names the head.
AUDIT_ARCHIVED_HEAD = """
SELECT last_seq AS seq, last_audit_id AS audit_id, last_row_hash AS row_hash FROM audit_archives
WHERE last_seq IS NOT NULL ORDER BY last_seq DESC LIMIT 1
"""

AUDIT_INSERT_ARCHIVE = """
INSERT INTO audit_archives (partition, lower_id, upper_id, rows, first_seq, last_seq, last_audit_id, last_row_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""

AUDIT_DETACH_PARTITION = "ALTER TABLE audit_log DETACH PARTITION {partition}"

# The admin listing, oldest first, filtered, keyset-paginated by audit_id ($4: after this id).
AUDIT_PAGE = """
SELECT audit_id, at, action, event_id, slot_id, appointment_id, attempt_id, actor, detail, seq
FROM audit_log
WHERE ($1::text IS NULL OR event_id = $1)
  AND ($2::timestamptz IS NULL OR at >= $2)
  AND ($3::text IS NULL OR action = $3)
  AND audit_id > $4
ORDER BY audit_id
LIMIT $5
"""

# --- an event's identity provider (shared/identity.py) ---------------------------------------------

EVENT_EXISTS = "SELECT 1 FROM events WHERE event_id = $1"

EVENT_IDENTITY = "SELECT * FROM event_identity WHERE event_id = $1"

UPSERT_EVENT_IDENTITY = """
INSERT INTO event_identity (event_id, issuer, audience, jwks_url, acr_values, min_acr, algorithms, updated_at,
                            updated_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8)
ON CONFLICT (event_id) DO UPDATE SET
    issuer = EXCLUDED.issuer, audience = EXCLUDED.audience, jwks_url = EXCLUDED.jwks_url,
    acr_values = EXCLUDED.acr_values, min_acr = EXCLUDED.min_acr, algorithms = EXCLUDED.algorithms,
    updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
RETURNING *
"""

DELETE_EVENT_IDENTITY = "DELETE FROM event_identity WHERE event_id = $1 RETURNING *"


# --- eligibility (shared/eligibility.py) ------------------------------------------------------------
# Named ELIG_*. The pointer row is the truth of what is published. Moves take the event's RULES_POINTER
# advisory lock exclusively, the booking transaction shares it before reading the pointer, so the two
# serialise (shared/eligibility.py says why an advisory lock and not the row's FOR SHARE).

ELIG_EVENT_EXISTS = "SELECT true FROM events WHERE event_id = $1"

ELIG_NEXT_VERSION = "SELECT coalesce(max(version), 0) + 1 FROM rule_versions WHERE event_id = $1"

ELIG_INSERT_VERSION = """
INSERT INTO rule_versions (event_id, version, digest, body, examples, examples_passed, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

ELIG_ENSURE_POINTER = "INSERT INTO rule_pointers (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING"

ELIG_LOCK_POINTER = """
SELECT published_version, shadow_version, serial FROM rule_pointers WHERE event_id = $1 FOR UPDATE
"""

ELIG_SET_POINTER = """
UPDATE rule_pointers SET published_version = $2, shadow_version = $3, serial = serial + 1 WHERE event_id = $1
"""

ELIG_POINTER = "SELECT published_version, shadow_version, serial FROM rule_pointers WHERE event_id = $1"

ELIG_POINTER_FOR_BOOKING = "SELECT published_version FROM rule_pointers WHERE event_id = $1"

ELIG_VERSION = "SELECT * FROM rule_versions WHERE event_id = $1 AND version = $2"

ELIG_VERSION_BODY = "SELECT body FROM rule_versions WHERE event_id = $1 AND version = $2"

ELIG_VERSIONS = "SELECT * FROM rule_versions WHERE event_id = $1 ORDER BY version"

ELIG_SET_STATE = "UPDATE rule_versions SET state = $3 WHERE event_id = $1 AND version = $2"

ELIG_INSERT_MOVE = """
INSERT INTO rule_moves (event_id, version, from_state, to_state, replaced_version, actor, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

ELIG_MOVES = "SELECT * FROM rule_moves WHERE event_id = $1 ORDER BY move_id"

# The version published before $2 became published (rollback's target): its latest publish move.
ELIG_REPLACED_BY = """
SELECT replaced_version FROM rule_moves
WHERE event_id = $1 AND version = $2 AND to_state = 'published'
ORDER BY move_id DESC LIMIT 1
"""

# The local dates "today" at the event's sites (every site when the event names none).
ELIG_EVENT_ZONES = """
SELECT DISTINCT si.timezone FROM events e
JOIN sites si ON e.site_ids IS NULL OR si.site_id = ANY (e.site_ids)
WHERE e.event_id = $1
"""

ELIG_INSERT_DECISION = """
INSERT INTO eligibility_decisions (
    decision_id, event_id, rule_version, outcome, reasons, explanation, kind, input_hash, person_ref,
    inputs_sealed, as_of, credential, shadow_version, shadow_outcome, shadow_reasons, overrides, actor,
    override_reason, valid_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
"""

ELIG_DECISION = "SELECT * FROM eligibility_decisions WHERE decision_id = $1"

# What a reschedule re-checks: the decision the appointment was booked with, and whose it is.
ELIG_APPOINTMENT_DECISION = "SELECT decision_id, person_ref FROM appointments WHERE appointment_id = $1"

ELIG_APPOINTMENT_VERSION = "UPDATE appointments SET rule_version = $2, decision_id = $3 WHERE appointment_id = $1"

ELIG_ATTEMPT_REASONS = "UPDATE booking_attempts SET reasons = $2 WHERE attempt_id = $1"

ELIG_ATTEMPT_REASONS_OF = "SELECT reasons FROM booking_attempts WHERE attempt_id = $1"

# Live evaluations that ran a shadow version beside the published one.
ELIG_SHADOWED = """
SELECT decision_id, outcome, reasons, shadow_outcome, shadow_reasons FROM eligibility_decisions
WHERE event_id = $1 AND shadow_version = $2 AND kind = 'evaluation'
ORDER BY created_at, decision_id
"""

# Evaluations made under a version whose inputs are still held (replay).
ELIG_REPLAYABLE = """
SELECT decision_id, person_ref, outcome, reasons, inputs_sealed, as_of FROM eligibility_decisions
WHERE event_id = $1 AND rule_version = $2 AND kind = 'evaluation' AND inputs_sealed IS NOT NULL
ORDER BY created_at, decision_id
"""

ELIG_BOOKED_UNDER = """
SELECT appointment_id, decision_id, status FROM appointments
WHERE event_id = $1 AND rule_version = $2 AND status = 'confirmed'
ORDER BY created_at, appointment_id
"""

# --- appointments flagged for review by a replay (shared/eligibility_review.py; migration 0030) ---

# Idempotent: the same replay flags an appointment once (the first flag's time and actor stay).
REVIEW_FLAG = """
INSERT INTO appointment_reviews (appointment_id, event_id, from_version, to_version, decision_id, reasons,
                                 flagged_at, flagged_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (appointment_id, from_version, to_version) DO NOTHING
RETURNING appointment_id
"""

# An event's flags with where and when the appointment is; $2 false: open flags only.
REVIEWS_OF_EVENT = """
SELECT r.appointment_id, r.event_id, r.from_version, r.to_version, r.decision_id, r.reasons, r.flagged_at,
       r.flagged_by, r.cleared_at, r.cleared_by, r.clear_reason, ap.status, s.slot_id, s.site_id, s.starts_at
FROM appointment_reviews r
JOIN appointments ap ON ap.appointment_id = r.appointment_id
JOIN slots s ON s.slot_id = ap.slot_id
WHERE r.event_id = $1 AND ($2 OR r.cleared_at IS NULL)
ORDER BY r.flagged_at, r.appointment_id, r.from_version, r.to_version
"""

# The flags of some appointments ($1) or of the appointments booked with a decision ($2), oldest first.
REVIEWS_OF = """
SELECT r.appointment_id, r.event_id, r.from_version, r.to_version, r.decision_id, r.reasons, r.flagged_at,
       r.flagged_by, r.cleared_at, r.cleared_by, r.clear_reason
FROM appointment_reviews r
WHERE r.appointment_id = ANY($1::uuid[]) OR r.decision_id = $2
ORDER BY r.flagged_at, r.appointment_id, r.from_version, r.to_version
"""

REVIEW_CLEAR = """
UPDATE appointment_reviews SET cleared_at = $2, cleared_by = $3, clear_reason = $4
WHERE appointment_id = $1 AND cleared_at IS NULL
RETURNING event_id, from_version, to_version
"""

SUPPORT_DECISIONS = """
SELECT decision_id, event_id, rule_version, outcome, reasons, explanation, kind, input_hash, actor,
       override_reason, overrides, valid_until, created_at
FROM eligibility_decisions
WHERE person_ref = $1 AND ($2::text IS NULL OR event_id = $2)
ORDER BY created_at DESC, decision_id
LIMIT 100
"""

# --- the read replica (shared/replica.py), asked on the replica ---------------------------------
# Behind by: nothing when every WAL record received is replayed (an idle primary sends none), else the
# age of the last transaction replayed.
REPLICA_LAG = """
SELECT pg_is_in_recovery() AS standby,
       pg_last_wal_receive_lsn() IS NOT NULL
           AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS caught_up,
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS behind_s
"""
