-- Delivery of results (issue 11): the resident's mailing addresses and the shipments the BFF asked
-- the courier for, with every tracking event (applied once, keyed by the courier's event id).
-- Names, phones and addresses are stored encrypted (auth.crypto.PiiCrypto; the column is bound in
-- as associated data), never in plain text.
CREATE TABLE IF NOT EXISTS bff.addresses (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    name_enc bytea NOT NULL,
    phone_enc bytea NOT NULL,
    address_enc bytea NOT NULL,
    region_code text NOT NULL CHECK (region_code ~ '^[0-9]{6}$'),
    label text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- A deleted address stays for the shipments that name it; it is no longer listed or usable.
    deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS addresses_person ON bff.addresses (person_id, created_at) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS bff.shipments (
    id uuid PRIMARY KEY,
    case_id uuid NOT NULL REFERENCES bff.cases (id),
    person_id text NOT NULL,
    -- Our stable request id (from the Idempotency-Key): the courier de-duplicates shipments by it.
    request_id uuid NOT NULL UNIQUE,
    address_id uuid NOT NULL REFERENCES bff.addresses (id),
    -- The recipient as sent (the address may be edited or deleted later).
    recipient_name_enc bytea NOT NULL,
    recipient_phone_enc bytea NOT NULL,
    recipient_address_enc bytea NOT NULL,
    region_code text NOT NULL,
    hall_id text NOT NULL,
    hall_name text NOT NULL,
    carrier text NOT NULL DEFAULT 'EMS',
    waybill_no text UNIQUE,
    status text NOT NULL CHECK (status IN ('requesting', 'created', 'picked_up', 'in_transit',
                                           'out_for_delivery', 'delivered', 'failed', 'returned')),
    -- The courier seq of the newest event applied: an older event joins the tracking list but
    -- never rolls the status back.
    version bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One shipment under way per case; after a return the result may be mailed again.
CREATE UNIQUE INDEX IF NOT EXISTS shipments_one_open_per_case ON bff.shipments (case_id) WHERE status <> 'returned';
CREATE INDEX IF NOT EXISTS shipments_person ON bff.shipments (person_id, created_at);

CREATE TABLE IF NOT EXISTS bff.shipment_events (
    event_id text PRIMARY KEY,
    shipment_id uuid NOT NULL REFERENCES bff.shipments (id),
    seq bigint NOT NULL,
    status text NOT NULL,
    occurred_at timestamptz NOT NULL,
    place text NOT NULL,
    description text NOT NULL,
    via text NOT NULL CHECK (via IN ('callback', 'feed', 'tracking')),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS shipment_events_shipment ON bff.shipment_events (shipment_id, seq);
