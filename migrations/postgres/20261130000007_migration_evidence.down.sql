ALTER TABLE verify_runs DROP COLUMN pass, DROP COLUMN era;
ALTER TABLE backfill_checkpoint DROP COLUMN era, DROP COLUMN pass;
ALTER TABLE migration_state
    DROP COLUMN legacy_sync_started_at,
    DROP COLUMN last_backfill_pass,
    DROP COLUMN unified_written_since,
    DROP COLUMN unified_era;
