"""The SQL the load tests read after a run (named statements, as in every package's queries.py)."""

OVERBOOKED_SLOTS = """
SELECT s.slot_id::text AS what, count(a.*) AS confirmed, s.capacity
FROM slots s JOIN appointments a ON a.slot_id = s.slot_id AND a.status = 'confirmed'
GROUP BY s.slot_id, s.capacity
HAVING count(a.*) > s.capacity
"""

PERSONS_BOOKED_TWICE = """
SELECT event_id AS what, count(*) AS confirmed
FROM appointments WHERE status = 'confirmed'
GROUP BY event_id, person_ref HAVING count(*) > 1
"""

ADMISSIONS_BOOKED_TWICE = """
SELECT event_id AS what, count(*) AS confirmed
FROM appointments
GROUP BY event_id, token_id HAVING count(*) > 1
"""

CONFIRMED_APPOINTMENTS = "SELECT count(*) FROM appointments WHERE status = 'confirmed'"
