ALTER TABLE archive_manifests DROP COLUMN waiver;
