-- expand: only adds nullable or defaulted columns, so a binary without this migration keeps
-- working against it (blue/green).
-- The evidence a phase transition depends on (issue: phases need evidence).
-- unified_era counts the periods in which every write reached the unified store; it moves
-- on each time such a period begins (unified_written_since goes from NULL to a time).
-- A legacy-only write, or flags that allow one, end the period (unified_written_since NULL).
ALTER TABLE migration_state
    ADD COLUMN unified_era           bigint NOT NULL DEFAULT 0,
    ADD COLUMN unified_written_since timestamptz,
    ADD COLUMN last_backfill_pass    bigint NOT NULL DEFAULT 0,
    ADD COLUMN legacy_sync_started_at timestamptz;

-- Each backfill pass has its own number and the era it began in: a pass counts as evidence
-- only if the era it began in is still the current one.
ALTER TABLE backfill_checkpoint
    ADD COLUMN pass bigint NOT NULL DEFAULT 0,
    ADD COLUMN era  bigint;

-- What a verify run vouches for: the era and the newest backfill pass complete when it began
-- (NULL: the backfill was not complete, so the run is no evidence for unified reads).
ALTER TABLE verify_runs
    ADD COLUMN era  bigint,
    ADD COLUMN pass bigint;
