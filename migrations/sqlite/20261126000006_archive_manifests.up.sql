-- Evidence of every `archive` and `restore-archive`: which legacy tables moved, their row
-- counts and checksums before and after the move, when, and in which phase.
CREATE TABLE archive_manifests (
    id          integer PRIMARY KEY AUTOINCREMENT,
    action      text NOT NULL CHECK (action IN ('archive', 'restore')),
    recorded_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    phase       text NOT NULL,
    tables      text NOT NULL
);
