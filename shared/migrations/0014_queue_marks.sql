-- Issue 14 item 4: where each event's serving position stood, and until when, so that the moment an
-- admission began survives Redis losing its data (waitingroom/admissions.py). A mark (p, t) says: at
-- queue-clock time t no rank above p had been reached yet. Edges merge theirs in with GREATEST.
CREATE TABLE queue_marks (
    event_id  text NOT NULL REFERENCES events (event_id),
    passed    bigint NOT NULL CHECK (passed >= 0),
    seen_at   double precision NOT NULL,   -- queue clock, epoch seconds: the latest moment p was seen
    PRIMARY KEY (event_id, passed)
);

-- Queues already running: their last checkpoint is the first mark on record.
INSERT INTO queue_marks (event_id, passed, seen_at)
SELECT event_id, floor(served)::bigint, taken_at FROM queue_checkpoints;
