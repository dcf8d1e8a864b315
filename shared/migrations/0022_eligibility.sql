-- Eligibility (issue 10): versioned rule sets per event, a published pointer, every decision stored.
--
-- A version is immutable once inserted (its body and digest never change; only its state moves).
-- rule_pointers holds, per event, the published and shadow versions: publishing and rollback move it,
-- and the booking transaction reads it holding the event's RULES_POINTER advisory lock in shared mode
-- (a move holds it alone: shared/locks.py), so a publish and a booking serialise: the version a
-- booking records is the one published when it commits.
CREATE TABLE rule_versions (
    event_id        text NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    digest          text NOT NULL,
    body            jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'shadow', 'published', 'retired')),
    examples        jsonb NOT NULL,          -- each example's result, run when the version was created
    examples_passed boolean NOT NULL,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, version)
);

-- Every state move of a version, with who did it and why (also written to the audit log).
CREATE TABLE rule_moves (
    move_id          bigserial PRIMARY KEY,
    event_id         text NOT NULL,
    version          integer NOT NULL,
    from_state       text,
    to_state         text NOT NULL CHECK (to_state IN ('draft', 'shadow', 'published', 'retired')),
    replaced_version integer,                -- publishing: the version published before (rollback's target)
    actor            text NOT NULL,
    reason           text CHECK (reason IS NULL OR length(reason) <= 500),
    at               timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (event_id, version) REFERENCES rule_versions (event_id, version) ON DELETE CASCADE
);
CREATE INDEX rule_moves_event ON rule_moves (event_id, move_id);

CREATE TABLE rule_pointers (
    event_id          text PRIMARY KEY REFERENCES events (event_id) ON DELETE CASCADE,
    published_version integer,
    shadow_version    integer,
    serial            bigint NOT NULL DEFAULT 0,   -- bumped by every move: processes notice a change
    FOREIGN KEY (event_id, published_version) REFERENCES rule_versions (event_id, version),
    FOREIGN KEY (event_id, shadow_version) REFERENCES rule_versions (event_id, version)
);

CREATE TABLE eligibility_decisions (
    decision_id     uuid PRIMARY KEY,
    event_id        text NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    rule_version    integer NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('eligible', 'ineligible')),
    reasons         text[] NOT NULL,
    explanation     jsonb NOT NULL,          -- rule id -> held | failed | error
    kind            text NOT NULL DEFAULT 'evaluation' CHECK (kind IN ('evaluation', 'override')),
    input_hash      bytea NOT NULL,          -- keyed hash of the canonical inputs
    person_ref      bytea NOT NULL,
    inputs_sealed   bytea,                   -- the inputs, encrypted; NULL once erased (retention)
    as_of           date NOT NULL,           -- the local date age was computed on
    credential      text NOT NULL,           -- the visitor id of the ticket or admission that asked
    shadow_version  integer,
    shadow_outcome  text CHECK (shadow_outcome IS NULL OR shadow_outcome IN ('eligible', 'ineligible')),
    shadow_reasons  text[],
    overrides       uuid REFERENCES eligibility_decisions (decision_id),
    actor           text,                    -- override: the staff member
    override_reason text CHECK (override_reason IS NULL OR length(override_reason) <= 500),
    valid_until     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    erased_at       timestamptz,
    FOREIGN KEY (event_id, rule_version) REFERENCES rule_versions (event_id, version),
    CHECK ((kind = 'override') = (actor IS NOT NULL AND override_reason IS NOT NULL AND overrides IS NOT NULL))
);
CREATE INDEX eligibility_decisions_person ON eligibility_decisions (person_ref, created_at DESC);
CREATE INDEX eligibility_decisions_version ON eligibility_decisions (event_id, rule_version);
CREATE INDEX eligibility_decisions_shadow ON eligibility_decisions (event_id, shadow_version)
    WHERE shadow_version IS NOT NULL;

-- The version that admitted each booking, and the decision it was booked with.
ALTER TABLE appointments ADD COLUMN rule_version integer;
ALTER TABLE appointments ADD COLUMN decision_id uuid REFERENCES eligibility_decisions (decision_id);
CREATE INDEX appointments_rule_version ON appointments (event_id, rule_version) WHERE rule_version IS NOT NULL;
-- An attempt refused as ineligible keeps its reasons (answered again to repeats of the request).
ALTER TABLE booking_attempts ADD COLUMN reasons jsonb;

-- Every event has its pointer row from birth (a booking of an event without rules reads a NULL version).
INSERT INTO rule_pointers (event_id) SELECT event_id FROM events ON CONFLICT DO NOTHING;
CREATE FUNCTION rule_pointer_for_new_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rule_pointers (event_id) VALUES (NEW.event_id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER events_rule_pointer AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION rule_pointer_for_new_event();
