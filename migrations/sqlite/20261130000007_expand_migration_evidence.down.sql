ALTER TABLE backfill_checkpoint DROP COLUMN era;
ALTER TABLE migration_state DROP COLUMN legacy_sync_started_at;
ALTER TABLE migration_state DROP COLUMN verified_era;
ALTER TABLE migration_state DROP COLUMN backfilled_era;
ALTER TABLE migration_state DROP COLUMN unified_written_since;
ALTER TABLE migration_state DROP COLUMN unified_era;
