-- E-licences (issue 13): licences shown (亮证) and checked at a counter, the e-licence library's
-- usage reports mirrored per resident, and what "who used my data" reads from the audit log.
--
-- A shown licence is a single-use QR payload: the counter's check claims the row with one UPDATE
-- (checked_at IS NULL), so two replicas can never both accept it. The library's authorisation code
-- is kept here, never in the payload: it is single-use and expires with the show (minutes), and the
-- counter reaches the library only through us.
CREATE TABLE IF NOT EXISTS bff.licence_shows (
    id uuid PRIMARY KEY,  -- the show's request id (stable for the resident's Idempotency-Key)
    person_id text NOT NULL,
    licence_id text NOT NULL,
    type_name text NOT NULL,
    auth_code text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    checked_at timestamptz,
    -- The check that claimed it (the counter's request id): a re-run of that same check may go on.
    checked_by_request uuid
);
CREATE INDEX IF NOT EXISTS licence_shows_person ON bff.licence_shows (person_id, created_at);

-- Every check a counter made, accepted or refused; a refusal we made ourselves (used, expired)
-- has no usage_id (the library never saw it), one the library made has its use's id.
CREATE TABLE IF NOT EXISTS bff.licence_checks (
    id uuid PRIMARY KEY,
    show_id uuid,  -- NULL: the payload was not one we signed
    person_id text,
    licence_id text,
    type_name text,
    staff_id text NOT NULL,
    department_code text NOT NULL,
    department_name text NOT NULL,
    channel text NOT NULL,
    purpose text NOT NULL,
    result text NOT NULL CHECK (result IN ('verified', 'refused')),
    refusal text,
    usage_id text,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS licence_checks_person ON bff.licence_checks (person_id, at);

-- The library's usage report of each resident's licences (who, which department, why, when),
-- read incrementally from its commit-ordered feed; `since` is the feed cursor per resident.
CREATE TABLE IF NOT EXISTS bff.licence_usages (
    id uuid PRIMARY KEY,
    usage_id text NOT NULL UNIQUE,
    person_id text NOT NULL,
    licence_id text NOT NULL,
    type_name text NOT NULL,
    action text NOT NULL,
    result text NOT NULL,
    refusal text,
    department_code text NOT NULL,
    department_name text NOT NULL,
    purpose text NOT NULL,
    channel text NOT NULL,
    used_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS licence_usages_person ON bff.licence_usages (person_id, used_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS bff.licence_usage_cursors (
    person_id text PRIMARY KEY,
    since bigint NOT NULL,
    synced_at timestamptz NOT NULL
);

-- "Who used my data" pages through one resident's audit records newest first.
CREATE INDEX IF NOT EXISTS audit_log_subject_at ON bff.audit_log (subject, at DESC);
