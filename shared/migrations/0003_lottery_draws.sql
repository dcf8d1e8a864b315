-- The pre-queue lottery of each event, recorded when an edge first sees it drawn: with the seed and
-- the size anyone can recompute the order (waitingroom/lottery.py) and audit it afterwards.
CREATE TABLE lottery_draws (
    event_id    text PRIMARY KEY REFERENCES events (event_id),
    size        bigint NOT NULL CHECK (size >= 0),
    seed        text NOT NULL,
    algorithm   text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
