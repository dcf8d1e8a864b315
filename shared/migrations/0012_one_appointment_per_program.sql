-- One active appointment per person per program (issue 14, item 9).
--
-- Until now a person could hold one confirmed appointment per *event*; an event without site_ids
-- admits to every site, so one person booked the same site twice through two events. Events are
-- how people are let in (a queue, a cohort, a wave); a program is what they are let in for (a
-- vaccination campaign, a licence renewal). The rule a program's operator expects is one active
-- appointment per person in the program, whichever event admitted them, and that is what the
-- database now enforces. Every event belongs to one program: 'default' unless the operator says
-- otherwise (PUT /admin/v1/events/{id} {"program_id"}), so by default all events are one program.
ALTER TABLE events
    ADD COLUMN program_id text NOT NULL DEFAULT 'default'
        CONSTRAINT events_program_id_check CHECK (program_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    ADD CONSTRAINT events_event_program UNIQUE (event_id, program_id);

-- The appointment carries its event's program: filled in from the event on insert (whoever
-- inserts), and kept equal to it by the composite foreign key, also when an operator moves an event
-- to another program (ON UPDATE CASCADE: its appointments move with it, or the move fails on the
-- unique index below if its people already hold appointments there).
ALTER TABLE appointments ADD COLUMN program_id text;
UPDATE appointments a SET program_id = e.program_id FROM events e WHERE e.event_id = a.event_id;
ALTER TABLE appointments
    ALTER COLUMN program_id SET NOT NULL,
    ADD CONSTRAINT appointments_event_program_fkey FOREIGN KEY (event_id, program_id)
        REFERENCES events (event_id, program_id) ON UPDATE CASCADE;

CREATE FUNCTION appointments_program_of_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.program_id IS NULL THEN
        SELECT program_id INTO NEW.program_id FROM events WHERE event_id = NEW.event_id;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER appointments_program_of_event
    BEFORE INSERT ON appointments
    FOR EACH ROW EXECUTE FUNCTION appointments_program_of_event();

DO $$
DECLARE
    people bigint;
BEGIN
    SELECT count(*) INTO people FROM (
        SELECT 1 FROM appointments WHERE status = 'confirmed' GROUP BY program_id, person_ref HAVING count(*) > 1
    ) AS twice;
    IF people > 0 THEN
        RAISE EXCEPTION 'migration 0012: % people hold confirmed appointments in more than one event', people
            USING HINT = 'Every event is now in program ''default'', with one active appointment per person: '
                'cancel the extra appointments (or give the events their own programs by hand), then start again.';
    END IF;
END
$$;

DROP INDEX appointments_person_active;
-- one person holds at most one active appointment per program
CREATE UNIQUE INDEX appointments_person_active ON appointments (program_id, person_ref) WHERE status = 'confirmed';
