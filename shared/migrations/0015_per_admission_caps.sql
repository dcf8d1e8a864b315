-- What one admission may create is capped (issue 14 item 7): holds in total, stored Idempotency-Keys
-- and booking attempts, each counted per token before a new one is written. idempotency_keys' primary
-- key (token_id, key) already serves its count; these serve the other two.
CREATE INDEX holds_token ON holds (token_id) WHERE token_id IS NOT NULL;
CREATE INDEX booking_attempts_token ON booking_attempts (token_id);
