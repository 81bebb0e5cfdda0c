-- A submitted form carries the contact's name and phone and a delivery address: personal data.
-- The case system holds every application; the BFF's own plaintext copy (bff.cases.form) was never
-- read, so it is no longer kept (nullable first, so replicas of the previous release can still
-- insert during a rolling restart; a later release drops the column).
ALTER TABLE bff.cases ALTER COLUMN form DROP NOT NULL;
UPDATE bff.cases SET form = NULL WHERE form IS NOT NULL;

-- A life-event member's application is re-sent when the member is retried: it is kept encrypted
-- (PiiCrypto field `application`). Rows from before stay readable and are encrypted when next read.
ALTER TABLE bff.life_application_members ADD COLUMN IF NOT EXISTS application_enc bytea;
ALTER TABLE bff.life_application_members ALTER COLUMN application DROP NOT NULL;
ALTER TABLE bff.life_application_members
    ADD CONSTRAINT life_application_member_has_application
    CHECK (application IS NOT NULL OR application_enc IS NOT NULL) NOT VALID;
