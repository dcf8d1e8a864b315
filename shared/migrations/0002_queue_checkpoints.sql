-- Where each event's queue stood, so a Redis that lost its data can be resumed without reusing an
-- arrival number or admitting anyone twice. Edges merge their snapshots in with GREATEST.
CREATE TABLE queue_checkpoints (
    event_id    text PRIMARY KEY REFERENCES events (event_id),
    joined      bigint NOT NULL CHECK (joined >= 0),
    served      double precision NOT NULL CHECK (served >= 0),
    join_rate   double precision NOT NULL DEFAULT 0,   -- recent joins per second (sizes the restore margin)
    taken_at    double precision NOT NULL               -- queue clock, epoch seconds
);
