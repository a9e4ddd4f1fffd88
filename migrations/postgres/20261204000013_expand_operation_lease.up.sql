-- One bulk operation at a time (backfill, sync-legacy, archive, restore-archive,
-- sweep-orphans, migrate down): the one row names the running operation's holder, host and
-- pid, and its heartbeat. A second operation is refused while the heartbeat is fresh, and
-- takes the row over once it is older than the grace period (its holder was killed). Times
-- are the database's clock, in seconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS operation_lease (
    id              integer PRIMARY KEY CHECK (id = 1),
    operation       text NOT NULL,
    holder          text NOT NULL,
    host            text NOT NULL,
    pid             bigint NOT NULL,
    started_epoch   double precision NOT NULL,
    heartbeat_epoch double precision NOT NULL
);
