ALTER TABLE archive_manifests DROP COLUMN IF EXISTS waiver;
