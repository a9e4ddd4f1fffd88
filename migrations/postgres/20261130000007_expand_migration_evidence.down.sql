ALTER TABLE backfill_checkpoint DROP COLUMN era;
ALTER TABLE migration_state
    DROP COLUMN legacy_sync_started_at,
    DROP COLUMN verified_era,
    DROP COLUMN backfilled_era,
    DROP COLUMN unified_written_since,
    DROP COLUMN unified_era;
