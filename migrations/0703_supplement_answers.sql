-- Issue 9 §6: answering a 补正 is an upstream mutation like a booking: its intent is recorded before
-- the case system is called, so that an answer lost on the way back (a 503 to the resident, a crash)
-- is settled from the case system's truth: it went through (the timeline shows it and the resident is
-- told), or it is voided there and ends failed (the 补正 stays open to be answered again).
-- status: sending (called, answer not known), answered, failed.
CREATE TABLE IF NOT EXISTS bff.case_supplement_answers (
    request_id uuid PRIMARY KEY,
    case_id uuid NOT NULL REFERENCES bff.cases (id),
    person_id text NOT NULL,
    supplement_id text NOT NULL,
    upload_ids text[] NOT NULL DEFAULT '{}',
    status text NOT NULL CHECK (status IN ('sending', 'answered', 'failed')),
    told_failed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS case_supplement_answers_sending ON bff.case_supplement_answers (created_at)
    WHERE status = 'sending';
