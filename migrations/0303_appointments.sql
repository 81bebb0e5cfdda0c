-- Appointments booked through the BFF. The booking system is the upstream of record, but the
-- capacity guarantee lives here: every hold or booking locks its slot row and counts what is
-- taken in the same transaction that inserts it (DOMAIN.md: never overbook, not only in a cache).
CREATE TABLE IF NOT EXISTS bff.slots (
    slot_id text PRIMARY KEY,
    hall_id text NOT NULL,
    item_code text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    capacity integer NOT NULL CHECK (capacity >= 0),
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS bff.appointment_holds (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    slot_id text NOT NULL REFERENCES bff.slots (slot_id),
    upstream_hold_id text,
    expires_at timestamptz NOT NULL,
    consumed_at timestamptz,
    released_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS appointment_holds_slot ON bff.appointment_holds (slot_id, expires_at);
CREATE INDEX IF NOT EXISTS appointment_holds_person ON bff.appointment_holds (person_id, expires_at);

-- status: pending (inserted, upstream not yet confirmed: it holds the seat), booked, checked_in,
-- cancelled, no_show, failed (the upstream refused: the seat is free again).
CREATE TABLE IF NOT EXISTS bff.appointments (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    slot_id text NOT NULL REFERENCES bff.slots (slot_id),
    hall_id text NOT NULL,
    item_code text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'booked', 'checked_in', 'cancelled', 'no_show', 'failed')),
    upstream_request_id uuid NOT NULL UNIQUE,
    booking_no text,
    ticket_no text,
    rescheduled_from uuid REFERENCES bff.appointments (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS appointments_slot ON bff.appointments (slot_id) WHERE status IN ('pending', 'booked', 'checked_in');
CREATE INDEX IF NOT EXISTS appointments_person ON bff.appointments (person_id, starts_at);
