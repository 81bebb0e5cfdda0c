-- Issue 9 section 2: uploads count against a per-person quota until a case uses them, and the ones
-- no case ever used expire (the `uploads_expire` job deletes the row and the file).
ALTER TABLE bff.uploads ADD COLUMN IF NOT EXISTS attached_at timestamptz;
CREATE INDEX IF NOT EXISTS uploads_unattached ON bff.uploads (created_at) WHERE attached_at IS NULL;
