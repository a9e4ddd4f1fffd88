-- Results of `verify`: the migration status shows the last one, and archiving requires a
-- clean one since the last write to legacy.
CREATE TABLE verify_runs (
    id          integer PRIMARY KEY AUTOINCREMENT,
    finished_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    checked     bigint NOT NULL,
    drifted     bigint NOT NULL,
    report      text NOT NULL
);
