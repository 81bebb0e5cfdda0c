-- Applications (办件) submitted through the BFF and the events the case system reported about
-- them. The case system is the upstream of record; this is the resident's view: who owns which
-- case, and one timeline built from the events (applied idempotently, keyed by event id).
CREATE TABLE IF NOT EXISTS bff.uploads (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    file_name text NOT NULL,
    media_type text NOT NULL,
    size_bytes integer NOT NULL,
    sha256 text NOT NULL,
    storage_key text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS uploads_person ON bff.uploads (person_id, created_at);

CREATE TABLE IF NOT EXISTS bff.cases (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    -- Our stable request id: the case system de-duplicates applications by it.
    request_id uuid NOT NULL UNIQUE,
    project_no text UNIQUE,
    item_code text NOT NULL,
    item_name text NOT NULL,
    region_code text NOT NULL,
    task_code text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('online', 'hall')),
    promise_days integer NOT NULL,
    status text NOT NULL,
    upstream_status_code text,
    result_code text,
    -- The case_seq of the newest event applied: older events join the timeline but never roll
    -- the status back.
    version integer NOT NULL DEFAULT 0,
    form jsonb NOT NULL,
    materials jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cases_person ON bff.cases (person_id, created_at DESC);

CREATE TABLE IF NOT EXISTS bff.case_events (
    event_id text PRIMARY KEY,
    case_id uuid NOT NULL REFERENCES bff.cases (id),
    case_seq integer NOT NULL,
    type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    data jsonb NOT NULL,
    via text NOT NULL CHECK (via IN ('webhook', 'feed', 'reply')),
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, case_seq)
);

-- Where each reconciler stopped reading an upstream's change feed.
CREATE TABLE IF NOT EXISTS bff.sync_cursors (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The transactional outbox the push capability drains: written in the same transaction as the
-- change it announces; `dedup_key` makes a re-applied change announce nothing twice.
CREATE TABLE IF NOT EXISTS bff.outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    person_id text NOT NULL,
    dedup_key text NOT NULL UNIQUE,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON bff.outbox (id) WHERE published_at IS NULL;

CREATE TABLE IF NOT EXISTS bff.ratings (
    id uuid PRIMARY KEY,
    case_id uuid NOT NULL UNIQUE REFERENCES bff.cases (id),
    person_id text NOT NULL,
    request_id uuid NOT NULL UNIQUE,
    channel text NOT NULL CHECK (channel IN ('online', 'hall')),
    level integer NOT NULL CHECK (level BETWEEN 1 AND 5),
    indicators jsonb NOT NULL,
    comment text NOT NULL,
    upstream_rating_id text,
    status text NOT NULL CHECK (status IN ('pending', 'submitted')),
    created_at timestamptz NOT NULL DEFAULT now()
);
