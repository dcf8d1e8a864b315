"""SQL of the booking API. Named statements with $n placeholders; callers own the transaction."""

from shared.queries import live_holds

LIST_SITES = "SELECT site_id, name, region, timezone, lat, lng, address FROM sites ORDER BY site_id"

GET_SITE = "SELECT site_id, name, region, timezone, lat, lng, address FROM sites WHERE site_id = $1"

UPSERT_SITE = """
INSERT INTO sites (site_id, name, region, timezone, lat, lng, address)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (site_id) DO UPDATE SET
    name = EXCLUDED.name, region = EXCLUDED.region, timezone = EXCLUDED.timezone,
    lat = EXCLUDED.lat, lng = EXCLUDED.lng, address = EXCLUDED.address
RETURNING site_id, name, region, timezone, lat, lng, address
"""

INSERT_SLOT = """
INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (slot_id) DO NOTHING
"""

GET_SLOT = f"""
SELECT s.slot_id, s.site_id, s.type_id, s.starts_at, s.ends_at, s.capacity, s.booked, s.withdrawn_at, si.timezone,
       {live_holds("$2")} AS held
FROM slots s JOIN sites si ON si.site_id = s.site_id
WHERE s.slot_id = $1
"""

GET_APPOINTMENT = """
SELECT ap.appointment_id, ap.event_id, ap.status, ap.slot_id, ap.created_at, ap.cancelled_at, ap.cancel_late,
       ap.checked_in_at, ap.rescheduled_at, s.type_id, s.site_id, s.starts_at, s.ends_at, si.timezone
FROM appointments ap
JOIN slots s ON s.slot_id = ap.slot_id
JOIN sites si ON si.site_id = s.site_id
WHERE ap.appointment_id = $1 AND ($2::text IS NULL OR ap.token_id = $2)  -- NULL: by its manage credential
"""

# The calendar file of the admission's appointment (admission/calendar.py).
APPOINTMENT_CALENDAR = """
SELECT ap.appointment_id, ap.status, ap.sequence, s.starts_at, s.ends_at, si.timezone, si.name AS site_name,
       si.address, t.name AS type_name
FROM appointments ap
JOIN slots s ON s.slot_id = ap.slot_id
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE ap.appointment_id = $1 AND ($2::text IS NULL OR ap.token_id = $2)  -- NULL: by its manage credential
"""

# --- idempotency keys, availability read model, readiness (admission/idempotency.py, availability.py, app.py) ---

# A stored response of a synchronous POST, if its key is younger than $3 hours.
STORED_RESPONSE = """
SELECT request_hash, response_status, response_body FROM idempotency_keys
WHERE token_id = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)
"""

# Stores (or, for a key that aged out, replaces) the response given to (token, key).
STORE_RESPONSE = """
INSERT INTO idempotency_keys (token_id, key, request_hash, response_status, response_body)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (token_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
    response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body, created_at = now()
"""

# How many Idempotency-Keys the admission has stored, counted up to $2 (the cap).
KEYS_STORED_BY = "SELECT count(*) FROM (SELECT 1 FROM idempotency_keys WHERE token_id = $1 LIMIT $2) stored"

# How many booking attempts (a booking's Idempotency-Keys) the admission has made, counted up to $2.
ATTEMPTS_MADE_BY = "SELECT count(*) FROM (SELECT 1 FROM booking_attempts WHERE token_id = $1 LIMIT $2) made"

# A site's offered slots starting in ($2 = now, $3), with their type's booking window and live holds.
SITE_SLOTS = f"""
SELECT s.slot_id, s.site_id, s.type_id, s.starts_at, s.ends_at, s.capacity, s.booked, si.timezone,
       t.min_notice_minutes, t.max_advance_days,
       {live_holds("$2")} AS held
FROM slots s
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE s.site_id = $1 AND s.withdrawn_at IS NULL AND s.starts_at > $2 AND s.starts_at < $3
ORDER BY s.starts_at
"""

# Readiness: one round trip to the database.
PING = "SELECT 1"

# An operator's freeze of an event's bookings (admission/freeze.py); no row: not frozen.
EVENT_FREEZE = "SELECT bookings_frozen, freeze_reason FROM events WHERE event_id = $1"

# --- the manage page (admission/manage.py) ----------------------------------------------------------

# What the manage page shows of one appointment: what, where, when, and the type's cancel policy.
MANAGED_APPOINTMENT = """
SELECT ap.appointment_id, ap.event_id, ap.status, ap.slot_id, ap.cancel_late, s.type_id, s.site_id, s.starts_at,
       s.ends_at, si.name AS site_name, si.region, si.address, si.timezone, si.lat, si.lng, t.name AS type_name,
       coalesce(t.cancel_cutoff_minutes, 0) AS cancel_cutoff_minutes
FROM appointments ap
JOIN slots s ON s.slot_id = ap.slot_id
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE ap.appointment_id = $1
"""

# What the claim page shows of an offer (admission/claim_page.py).
OFFER_FOR_PAGE = """
SELECT o.offer_id, o.status, o.expires_at, s.type_id, s.starts_at, s.ends_at, si.name AS site_name, si.region,
       si.address, si.timezone, si.lat, si.lng, t.name AS type_name
FROM waitlist_offers o
JOIN slots s ON s.slot_id = o.slot_id
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE o.offer_id = $1
"""
