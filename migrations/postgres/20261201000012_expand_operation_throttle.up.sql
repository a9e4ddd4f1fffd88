-- How the bulk operations that make read replicas lag (backfill, sync-legacy) are throttled:
-- paused, or held while a replica's replay lag or the primary's active backends exceed a
-- limit. Any replica (admin API) or the CLI (`throttle`) changes a row while the operation
-- runs; the operation reads it before every batch and reports back why it waits.
CREATE TABLE IF NOT EXISTS operation_throttle (
    operation   text PRIMARY KEY CHECK (operation IN ('backfill', 'sync_legacy')),
    paused      boolean NOT NULL DEFAULT false,
    max_lag_ms  bigint CHECK (max_lag_ms > 0),
    max_load    bigint CHECK (max_load > 0),
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- What the running operation last reported: why it waits (NULL: it does not).
    throttled   text,
    lag_ms      bigint,
    reported_at timestamptz
);
