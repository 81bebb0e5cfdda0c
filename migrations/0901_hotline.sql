-- 12345 tickets (issue 15): the tickets a resident filed through us, and every step of each
-- (applied once, keyed by 12345's event id). The text and the street address are stored encrypted
-- (auth.crypto.PiiCrypto; the column is bound in as associated data), never in plain text.
CREATE TABLE IF NOT EXISTS bff.hotline_tickets (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    -- Our stable request id (from the Idempotency-Key): 12345 de-duplicates filings by it.
    request_id uuid NOT NULL UNIQUE,
    ticket_no text UNIQUE,
    kind text NOT NULL CHECK (kind IN ('consultation', 'complaint', 'report', 'suggestion', 'praise')),
    title text NOT NULL,
    text_enc bytea NOT NULL,
    -- The filing exactly as sent to 12345 (encrypted): an answer lost on the way is asked for again
    -- with the same bytes (12345 refuses a request id reused with other ones).
    request_enc bytea,
    channel text NOT NULL,
    anonymous boolean NOT NULL DEFAULT false,
    item_code text,
    item_name text,
    case_id uuid,
    project_no text,
    region_code text,
    address_enc bytea,
    -- [{uploadId, fileName}]: our uploads the ticket carries (links to them went to 12345).
    attachments jsonb NOT NULL DEFAULT '[]',
    status text NOT NULL CHECK (status IN ('filing', 'accepted', 'dispatched', 'in_progress', 'awaiting_info',
                                           'supervised', 'feedback_given', 'closed')),
    -- The ticket_seq of the newest step applied: an older step joins the timeline but never rolls
    -- the status back.
    version integer NOT NULL DEFAULT 0,
    department_name text,
    category text,
    urgency text,
    deadline_at timestamptz,
    open_info_request jsonb,
    rating jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hotline_tickets_person ON bff.hotline_tickets (person_id, created_at);
CREATE INDEX IF NOT EXISTS hotline_tickets_filing ON bff.hotline_tickets (created_at) WHERE ticket_no IS NULL;

CREATE TABLE IF NOT EXISTS bff.hotline_events (
    event_id text PRIMARY KEY,
    ticket_id uuid NOT NULL REFERENCES bff.hotline_tickets (id),
    seq bigint NOT NULL,
    ticket_seq integer NOT NULL,
    type text NOT NULL,
    status text NOT NULL,
    occurred_at timestamptz NOT NULL,
    -- What the timeline shows; the resident's own reply text is not kept here (text_enc holds theirs).
    data jsonb NOT NULL DEFAULT '{}',
    via text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hotline_events_ticket ON bff.hotline_events (ticket_id, ticket_seq);
