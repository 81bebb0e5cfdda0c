-- 一件事一次办: one application for a life event (bff.life_applications) owning one case per
-- applicable item (bff.life_application_members). A member's `case_id` is the id (and upstream
-- request id) of its current attempt's case in bff.cases; the case's status is read from there.
-- Member state: submitting (asked, no answer yet), submitted (the case system took it), failed
-- (refused or unanswered: `failure_code`/`failure_detail*` say why; retryable).
CREATE TABLE IF NOT EXISTS bff.life_applications (
    id uuid PRIMARY KEY,
    person_id text NOT NULL,
    event_id text NOT NULL,
    region_code text NOT NULL,
    answers jsonb NOT NULL,
    -- Applicable items that cannot be applied for online here: done in the hall, shown, not sent.
    hall_items jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS life_applications_person ON bff.life_applications (person_id, created_at DESC);

CREATE TABLE IF NOT EXISTS bff.life_application_members (
    application_id uuid NOT NULL REFERENCES bff.life_applications (id),
    position int NOT NULL,
    item_code text NOT NULL,
    item_name text NOT NULL,
    -- The member's own application (CaseIn, camelCase): only the materials its guide asks for.
    application jsonb NOT NULL,
    case_id uuid NOT NULL,
    attempts int NOT NULL DEFAULT 1,
    state text NOT NULL DEFAULT 'submitting' CHECK (state IN ('submitting', 'submitted', 'failed')),
    failure_code text,
    failure_detail text,
    failure_detail_zh text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application_id, item_code)
);
CREATE UNIQUE INDEX IF NOT EXISTS life_application_member_case ON bff.life_application_members (case_id);
