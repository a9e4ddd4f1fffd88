-- expand: only adds nullable or defaulted columns, so a binary without this migration keeps
-- working against it (blue/green). See the PostgreSQL migration for what each column means.
ALTER TABLE migration_state ADD COLUMN unified_era bigint NOT NULL DEFAULT 0;
ALTER TABLE migration_state ADD COLUMN unified_written_since text;
ALTER TABLE migration_state ADD COLUMN backfilled_era bigint;
ALTER TABLE migration_state ADD COLUMN verified_era bigint;
ALTER TABLE migration_state ADD COLUMN legacy_sync_started_at text;
ALTER TABLE backfill_checkpoint ADD COLUMN era bigint;
