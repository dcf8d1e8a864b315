-- Appointments a replay flagged for review (issue 10, "flagged, never silently cancelled"): booked
-- under a version that the replay's other version refuses. The replay never cancels; support reviews,
-- then cancels the appointment or clears the flag with a reason. One row per appointment and replay
-- (from -> to), so running the same replay again flags nothing new and keeps the first flag's time;
-- a cleared flag stays as history (who cleared it, when, why).
CREATE TABLE appointment_reviews (
    appointment_id uuid NOT NULL REFERENCES appointments (appointment_id),
    event_id       text NOT NULL,
    from_version   integer NOT NULL,   -- the version the appointment was booked under
    to_version     integer NOT NULL,   -- the version that refuses it
    decision_id    uuid,               -- the decision it was booked with
    reasons        text[] NOT NULL DEFAULT '{}',  -- to_version's reason codes (never the inputs)
    flagged_at     timestamptz NOT NULL,
    flagged_by     text NOT NULL,      -- the staff actor who ran the replay
    cleared_at     timestamptz,
    cleared_by     text,
    clear_reason   text,
    PRIMARY KEY (appointment_id, from_version, to_version),
    CHECK ((cleared_at IS NULL) = (cleared_by IS NULL) AND (cleared_at IS NULL) = (clear_reason IS NULL))
);
-- The open flags of an event, oldest first (the review list).
CREATE INDEX appointment_reviews_open ON appointment_reviews (event_id, flagged_at) WHERE cleared_at IS NULL;
CREATE INDEX appointment_reviews_decision ON appointment_reviews (decision_id);
