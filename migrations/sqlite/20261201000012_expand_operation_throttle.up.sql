-- How the bulk operations (backfill, sync-legacy) are throttled; see the PostgreSQL migration.
CREATE TABLE IF NOT EXISTS operation_throttle (
    operation   text PRIMARY KEY CHECK (operation IN ('backfill', 'sync_legacy')),
    paused      boolean NOT NULL DEFAULT 0,
    max_lag_ms  integer CHECK (max_lag_ms > 0),
    max_load    integer CHECK (max_load > 0),
    updated_by  text NOT NULL,
    updated_at  text NOT NULL DEFAULT CURRENT_TIMESTAMP,
    throttled   text,
    lag_ms      integer,
    reported_at text
);
