"""SQL of the command line (demo seeding). Named statements with $n placeholders; callers own the transaction."""

# The demo's appointment type: 30 minutes, 5 seats, 5 minutes' notice, $2 days ahead, cancel an hour
# before. An existing type of that id is left as it is (never overwrite an operator's settings).
INSERT_DEMO_TYPE = """
INSERT INTO appointment_types (type_id, name, duration_minutes, seats_per_slot, min_notice_minutes,
    max_advance_days, cancel_cutoff_minutes)
VALUES ($1, 'Vaccination', 30, 5, 5, $2, 60)
ON CONFLICT (type_id) DO NOTHING
"""
