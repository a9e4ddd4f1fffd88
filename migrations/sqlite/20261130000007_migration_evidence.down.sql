ALTER TABLE verify_runs DROP COLUMN pass;
ALTER TABLE verify_runs DROP COLUMN era;
ALTER TABLE backfill_checkpoint DROP COLUMN era;
ALTER TABLE backfill_checkpoint DROP COLUMN pass;
ALTER TABLE migration_state DROP COLUMN legacy_sync_started_at;
ALTER TABLE migration_state DROP COLUMN last_backfill_pass;
ALTER TABLE migration_state DROP COLUMN unified_written_since;
ALTER TABLE migration_state DROP COLUMN unified_era;
