-- The waitlist of a full hall: residents in line for one item in one hall over a range of days.
-- A freed seat becomes a real hold (bff.appointment_holds, so it counts in the capacity guarantee)
-- offered to the first in line; `hold_id` is the current offer's hold.
-- status: waiting (in line), offering (a seat reserved here, the booking system not yet asked),
-- offered (a hold at the booking system, the resident told), booked (the offer was claimed),
-- missed (the offer lapsed or was let go), left (the resident left the line).
CREATE TABLE IF NOT EXISTS bff.waitlist_entries (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    hall_id text NOT NULL,
    item_code text NOT NULL,
    date_from date NOT NULL,
    date_to date NOT NULL CHECK (date_to >= date_from),
    status text NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'offering', 'offered', 'booked', 'missed', 'left')),
    -- The place in line: the moment of joining (clock time, so one transaction's rows still order).
    joined_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    hold_id uuid REFERENCES bff.appointment_holds (id),
    offered_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS waitlist_line ON bff.waitlist_entries (hall_id, item_code, joined_at, id)
    WHERE status IN ('waiting', 'offering');
CREATE INDEX IF NOT EXISTS waitlist_person ON bff.waitlist_entries (person_id, joined_at);
-- One held seat is offered to one resident only.
CREATE UNIQUE INDEX IF NOT EXISTS waitlist_one_offer_per_hold ON bff.waitlist_entries (hold_id)
    WHERE hold_id IS NOT NULL;
