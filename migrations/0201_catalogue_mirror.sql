-- The catalogue mirror: a read-optimised copy of the item library (事项库), filled by a full sync
-- and kept current from its change feed. The library stays the source of truth; everything here can
-- be rebuilt by a full resync.

-- One row per implementation entry (an item as one region implements it), pointing at the current
-- guide version. `sync_run` is the full sync that last saw the entry: a full resync marks entries it
-- did not see as withdrawn.
CREATE TABLE IF NOT EXISTS bff.catalogue_entries (
    catalog_code text NOT NULL,
    region_code text NOT NULL,
    parent_code text,
    scenario text,
    name text NOT NULL,
    audience text NOT NULL,
    theme text NOT NULL,
    kind text NOT NULL,
    department text NOT NULL,
    online boolean NOT NULL,
    bookable boolean NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'cancelled', 'withdrawn')),
    version integer NOT NULL,
    etag text NOT NULL,
    upstream_seq bigint NOT NULL,
    synced_at timestamptz NOT NULL,
    sync_run bigint NOT NULL,
    PRIMARY KEY (catalog_code, region_code)
);
CREATE INDEX IF NOT EXISTS catalogue_entries_active ON bff.catalogue_entries (status, catalog_code);
CREATE INDEX IF NOT EXISTS catalogue_entries_run ON bff.catalogue_entries (sync_run);

-- Every guide version ever mirrored, shaped for the phone (JSON bytes, served as they are).
CREATE TABLE IF NOT EXISTS bff.catalogue_guides (
    catalog_code text NOT NULL,
    region_code text NOT NULL,
    version integer NOT NULL,
    etag text NOT NULL,
    body bytea NOT NULL,
    synced_at timestamptz NOT NULL,
    PRIMARY KEY (catalog_code, region_code, version)
);

CREATE TABLE IF NOT EXISTS bff.catalogue_regions (
    code text PRIMARY KEY,
    name text NOT NULL,
    type text NOT NULL,
    level text NOT NULL,
    parent_code text,
    lng double precision NOT NULL,
    lat double precision NOT NULL,
    synced_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS bff.catalogue_halls (
    id text PRIMARY KEY,
    name text NOT NULL,
    region_code text NOT NULL,
    address text NOT NULL,
    hours text NOT NULL,
    phone text NOT NULL,
    lat double precision NOT NULL,
    lng double precision NOT NULL,
    demo boolean NOT NULL,
    synced_at timestamptz NOT NULL
);

-- One row: where the change feed was read up to, and how the last runs went.
CREATE TABLE IF NOT EXISTS bff.catalogue_sync_state (
    id smallint PRIMARY KEY CHECK (id = 1),
    feed_cursor bigint NOT NULL DEFAULT 0,
    run bigint NOT NULL DEFAULT 0,
    index_version bigint NOT NULL DEFAULT 0,
    last_full_at timestamptz,
    last_success_at timestamptz,
    last_attempt_at timestamptz,
    last_error text
);
INSERT INTO bff.catalogue_sync_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING;
