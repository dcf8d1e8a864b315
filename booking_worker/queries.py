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
