-- Evidence of every `archive` and `restore-archive`: which legacy tables moved, their row
-- counts and checksums before and after the move, when, and in which phase.
CREATE TABLE archive_manifests (
    id          bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    action      varchar(10) NOT NULL CHECK (action IN ('archive', 'restore')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    phase       varchar(20) NOT NULL,
    tables      jsonb NOT NULL
);
