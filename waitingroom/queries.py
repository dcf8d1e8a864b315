"""SQL of the waiting room (events). Named statements; callers own transactions."""

EVENT_COLUMNS = """
    event_id, name, rate_per_s, opens_at, prequeue_opens_at, closes_at, paused, admission_ttl_s, site_ids,
    one_place_per_person, abandon_after_s, max_active, rate_mode, rate_min, rate_max, target_queue_depth,
    target_latency_s, pow_difficulty, program_id, bookings_frozen, freeze_reason
"""

GET_EVENT = f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"

LIST_EVENTS = f"SELECT {EVENT_COLUMNS} FROM events ORDER BY event_id"

UPSERT_EVENT = f"""
INSERT INTO events ({EVENT_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
ON CONFLICT (event_id) DO UPDATE SET
    name = EXCLUDED.name,
    rate_per_s = EXCLUDED.rate_per_s,
    opens_at = EXCLUDED.opens_at,
    prequeue_opens_at = EXCLUDED.prequeue_opens_at,
    closes_at = EXCLUDED.closes_at,
    paused = EXCLUDED.paused,
    admission_ttl_s = EXCLUDED.admission_ttl_s,
    site_ids = EXCLUDED.site_ids,
    one_place_per_person = EXCLUDED.one_place_per_person,
    abandon_after_s = EXCLUDED.abandon_after_s,
    max_active = EXCLUDED.max_active,
    rate_mode = EXCLUDED.rate_mode,
    rate_min = EXCLUDED.rate_min,
    rate_max = EXCLUDED.rate_max,
    target_queue_depth = EXCLUDED.target_queue_depth,
    target_latency_s = EXCLUDED.target_latency_s,
    pow_difficulty = EXCLUDED.pow_difficulty,
    -- the event's appointments follow (ON UPDATE CASCADE), or the unique index refuses the move
    program_id = EXCLUDED.program_id,
    bookings_frozen = EXCLUDED.bookings_frozen,
    freeze_reason = EXCLUDED.freeze_reason,
    updated_at = now()
RETURNING {EVENT_COLUMNS}
"""

COUNT_EVENTS = "SELECT count(*) FROM events"

UNKNOWN_SITES = """
SELECT given.site_id FROM unnest($1::text[]) WITH ORDINALITY AS given (site_id, n)
WHERE NOT EXISTS (SELECT 1 FROM sites WHERE sites.site_id = given.site_id)
ORDER BY given.n
"""

# Monotonic merge: whichever edge saw the queue further along wins, field by field.
SAVE_CHECKPOINT = """
INSERT INTO queue_checkpoints AS c (event_id, joined, served, join_rate, taken_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (event_id) DO UPDATE SET
    joined = GREATEST(c.joined, EXCLUDED.joined),
    served = GREATEST(c.served, EXCLUDED.served),
    join_rate = EXCLUDED.join_rate,
    taken_at = GREATEST(c.taken_at, EXCLUDED.taken_at)
"""

# Marks (waitingroom/admissions.py): the latest queue-clock moment each serving position was seen.
SAVE_MARK = """
INSERT INTO queue_marks AS m (event_id, passed, seen_at) VALUES ($1, $2, $3)
ON CONFLICT (event_id, passed) DO UPDATE SET seen_at = GREATEST(m.seen_at, EXCLUDED.seen_at)
"""

# The latest mark below a rank: the earliest moment that rank can have been reached.
LAST_MARK_BELOW = """
SELECT seen_at FROM queue_marks WHERE event_id = $1 AND passed < $2 ORDER BY passed DESC LIMIT 1
"""

LIST_CHECKPOINTS = "SELECT event_id, joined, served, join_rate, taken_at FROM queue_checkpoints"

# First writer wins: every edge sees the same draw, so later inserts change nothing.
SAVE_DRAW = """
INSERT INTO lottery_draws (event_id, size, seed, algorithm) VALUES ($1, $2, $3, $4)
ON CONFLICT (event_id) DO NOTHING
"""

LIST_DRAWS = "SELECT event_id, size, seed, algorithm, recorded_at FROM lottery_draws"

GET_DRAW = "SELECT event_id, size, seed, algorithm, recorded_at FROM lottery_draws WHERE event_id = $1"

# Admissions used: each admission token books at most one appointment, ever.
COUNT_USED = "SELECT count(*) FROM appointments WHERE event_id = $1"

# Readiness: one round trip to the database.
PING = "SELECT 1"

# The console's recent actions: operators' changes to events, newest first. Only event_* actions:
# other rows (bookings, support) are not an operator's business, and may concern a person.
RECENT_EVENT_ACTIONS = """
SELECT audit_id, at, action, event_id, actor, detail
FROM audit_log
WHERE action LIKE 'event\\_%' AND ($1::text IS NULL OR event_id = $1)
ORDER BY audit_id DESC
LIMIT $2
"""

# --- invite links (waitingroom/invites.py) -----------------------------------------------------------

INSERT_INVITE_BATCH = """
INSERT INTO invite_batches (batch_id, event_id, label, expires_at, created_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
"""

INSERT_INVITE = "INSERT INTO invites (invite_id, batch_id, token_hash) VALUES ($1, $2, $3)"

# The one guard of "each usable once": a single conditional UPDATE. Of any number of concurrent
# redemptions of one invite, exactly one finds used_at still NULL (the others wait on its row lock,
# then re-check the condition and match nothing). $3 is the edge's clock.
REDEEM_INVITE = """
UPDATE invites AS i SET used_at = $3
FROM invite_batches AS b
WHERE i.token_hash = $1 AND b.batch_id = i.batch_id AND b.event_id = $2
  AND i.used_at IS NULL AND i.revoked_at IS NULL AND b.expires_at > $3
RETURNING i.invite_id, i.serial, i.batch_id
"""

# Why a redemption matched nothing (read after the UPDATE decided; only for the refusal's code).
INVITE_STATE = """
SELECT i.used_at, i.revoked_at, b.expires_at, b.event_id
FROM invites AS i JOIN invite_batches AS b USING (batch_id)
WHERE i.token_hash = $1
"""

REVOKE_INVITE_BATCH = """
UPDATE invites AS i SET revoked_at = $3
FROM invite_batches AS b
WHERE b.batch_id = i.batch_id AND b.event_id = $1 AND i.batch_id = $2
  AND i.used_at IS NULL AND i.revoked_at IS NULL
"""

REVOKE_INVITE = """
UPDATE invites AS i SET revoked_at = $3
FROM invite_batches AS b
WHERE b.batch_id = i.batch_id AND b.event_id = $1 AND i.invite_id = $2
  AND i.used_at IS NULL AND i.revoked_at IS NULL
"""

INVITE_BATCH_OF = """
SELECT b.batch_id FROM invite_batches AS b WHERE b.event_id = $1 AND b.batch_id = $2
UNION ALL
SELECT i.batch_id FROM invites AS i JOIN invite_batches AS b USING (batch_id)
WHERE b.event_id = $1 AND i.invite_id = $2
"""

# Per batch: issued, used, revoked, expired (unused and past expiry) and still open, at $2.
INVITE_COUNTS = """
SELECT b.batch_id, b.label, b.expires_at, b.created_at, b.created_by,
       count(*) AS issued,
       count(*) FILTER (WHERE i.used_at IS NOT NULL) AS used,
       count(*) FILTER (WHERE i.revoked_at IS NOT NULL) AS revoked,
       count(*) FILTER (WHERE i.used_at IS NULL AND i.revoked_at IS NULL AND b.expires_at <= $2) AS expired,
       count(*) FILTER (WHERE i.used_at IS NULL AND i.revoked_at IS NULL AND b.expires_at > $2) AS open
FROM invite_batches AS b JOIN invites AS i USING (batch_id)
WHERE b.event_id = $1
GROUP BY b.batch_id
ORDER BY b.created_at, b.batch_id
"""

# --- the console's booking figures (console.BookingFigures), one query per group -----------------
CONSOLE_BOOKED = """
SELECT count(*) AS booked FROM appointments WHERE event_id = $1 AND status = 'confirmed'
"""

CONSOLE_REFUSALS = """
SELECT code, count(*) AS n FROM booking_attempts
WHERE event_id = $1 AND status = 'rejected' AND code IS NOT NULL
GROUP BY code
"""

CONSOLE_LATENCY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p99,
       count(*) AS n
FROM booking_attempts
WHERE event_id = $1 AND status IN ('confirmed', 'rejected') AND finished_at IS NOT NULL
  AND finished_at >= now() - make_interval(secs => $2)
"""

CONSOLE_INVITES = """
SELECT count(*) AS issued,
       count(*) FILTER (WHERE i.used_at IS NOT NULL) AS used,
       count(*) FILTER (WHERE i.used_at IS NULL AND i.revoked_at IS NULL AND b.expires_at > $2) AS open
FROM invite_batches AS b JOIN invites AS i USING (batch_id)
WHERE b.event_id = $1
"""

# --- the queue page's eligibility step (waitingroom/eligibility.py) ----------------------------------
# The published rule set's attribute schema, and whether the event names an identity provider.
PUBLISHED_ATTRIBUTES = """
SELECT v.version, v.body -> 'attributes' AS attributes,
       EXISTS (SELECT 1 FROM event_identity i WHERE i.event_id = p.event_id) AS identity
FROM rule_pointers p
JOIN rule_versions v ON v.event_id = p.event_id AND v.version = p.published_version
WHERE p.event_id = $1
"""

# --- the page's confirmation (waitingroom/booked.py) ---

# The appointment an admission booked (token_id = the admitted visitor), with what, where and when.
# The site's address is read through to_jsonb so this works whether or not the sites table has an
# `address` column (NULL when it has none).
ADMISSION_APPOINTMENT = """
SELECT ap.appointment_id, ap.status, s.starts_at, s.ends_at, si.site_id, si.name AS site_name,
       to_jsonb(si) ->> 'address' AS address, si.timezone, t.name AS type_name
FROM appointments ap
JOIN slots s ON s.slot_id = ap.slot_id
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE ap.token_id = $1 AND ap.event_id = $2
"""
