-- rate_mode 'auto': the admission rate follows the booking side (queue depth, attempt latency),
-- between rate_min and rate_max; rate_per_s is where it starts.
ALTER TABLE events
    ADD COLUMN rate_mode text NOT NULL DEFAULT 'fixed' CHECK (rate_mode IN ('fixed', 'auto')),
    ADD COLUMN rate_min double precision CHECK (rate_min IS NULL OR rate_min >= 0),
    ADD COLUMN rate_max double precision CHECK (rate_max IS NULL OR rate_max > 0),
    ADD COLUMN target_queue_depth integer NOT NULL DEFAULT 200 CHECK (target_queue_depth > 0),
    ADD COLUMN target_latency_s double precision NOT NULL DEFAULT 2.0 CHECK (target_latency_s > 0);
