-- One bulk operation at a time; see the PostgreSQL migration.
CREATE TABLE IF NOT EXISTS operation_lease (
    id              integer PRIMARY KEY CHECK (id = 1),
    operation       text NOT NULL,
    holder          text NOT NULL,
    host            text NOT NULL,
    pid             integer NOT NULL,
    started_epoch   real NOT NULL,
    heartbeat_epoch real NOT NULL
);
