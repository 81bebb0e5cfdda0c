-- Issue 9 §5: search tells whether the resident's region mails the result (免费邮寄送达), so the
-- phone does not promise a parcel where the hall only hands it over. The flag was in each guide's
-- body only; rows mirrored before this column are filled from the guide they point at.
ALTER TABLE bff.catalogue_entries ADD COLUMN IF NOT EXISTS mailable boolean NOT NULL DEFAULT false;
UPDATE bff.catalogue_entries e
SET mailable = coalesce((convert_from(g.body, 'UTF8')::jsonb -> 'channels' ->> 'mailable')::boolean, false)
FROM bff.catalogue_guides g
WHERE g.catalog_code = e.catalog_code AND g.region_code = e.region_code AND g.version = e.version;
