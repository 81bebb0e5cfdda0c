-- The sandbox's own tables (schema `sandbox`). Idempotent: applied at every sandbox start.
CREATE SCHEMA IF NOT EXISTS sandbox;

CREATE TABLE IF NOT EXISTS sandbox.catalogue_entries (
    catalog_code text NOT NULL,
    region_code text NOT NULL,
    task_code text NOT NULL,
    task_version integer NOT NULL,
    status text NOT NULL DEFAULT 'active',
    updated_at timestamptz NOT NULL DEFAULT now(),
    body jsonb NOT NULL,
    PRIMARY KEY (catalog_code, region_code)
);
CREATE INDEX IF NOT EXISTS catalogue_entries_updated ON sandbox.catalogue_entries (updated_at, catalog_code, region_code);
