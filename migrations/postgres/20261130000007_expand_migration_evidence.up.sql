-- expand: only adds nullable or defaulted columns, so a binary without this migration keeps
-- working against it (blue/green).
-- The evidence a phase transition depends on. unified_era counts the periods in which every
-- write reached the unified store: it moves on each time such a period begins
-- (unified_written_since goes from NULL to a time); a legacy-only write, or flags that allow
-- one, end it. backfilled_era / verified_era: the era in which a backfill pass begun in that
-- era completed for every entity kind, and a clean verify followed.
ALTER TABLE migration_state
    ADD COLUMN unified_era            bigint NOT NULL DEFAULT 0,
    ADD COLUMN unified_written_since  timestamptz,
    ADD COLUMN backfilled_era         bigint,
    ADD COLUMN verified_era           bigint,
    ADD COLUMN legacy_sync_started_at timestamptz;

-- The era a backfill pass began in (NULL: a legacy-only write could still happen then).
ALTER TABLE backfill_checkpoint ADD COLUMN era bigint;
