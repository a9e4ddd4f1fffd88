-- expand: the quarantine becomes part of the cut-over's evidence; see the PostgreSQL migration.
ALTER TABLE backfill_quarantine ADD COLUMN kind varchar(20) NOT NULL DEFAULT 'invalid'
    CHECK (kind IN ('orphan', 'empty', 'invalid', 'unknown', 'unreadable', 'refused'));
ALTER TABLE backfill_quarantine ADD COLUMN shown_value text;
ALTER TABLE backfill_quarantine ADD COLUMN accepted_by varchar(200);
ALTER TABLE backfill_quarantine ADD COLUMN accepted_at text;

UPDATE backfill_quarantine SET kind = CASE
    WHEN reason IN ('the listing does not exist', 'the category does not exist',
                    'the attribute does not exist or cannot be read') THEN 'orphan'
    WHEN reason LIKE 'no usable % value in the row' THEN 'empty'
    WHEN reason LIKE 'no definition of this code%' OR reason LIKE 'no unified definition%' THEN 'unknown'
    WHEN reason LIKE 'the database refused it%' THEN 'refused'
    ELSE 'invalid' END;

CREATE INDEX backfill_quarantine_unsettled ON backfill_quarantine (attribute_code)
    WHERE kind NOT IN ('orphan', 'empty') AND accepted_at IS NULL;

-- SQLite cannot change a CHECK: the resolutions move to a table that allows the new actions.
CREATE TABLE quarantine_resolutions_new (
    id             integer PRIMARY KEY AUTOINCREMENT,
    action         varchar(20) NOT NULL
        CHECK (action IN ('alias', 'option', 'move', 'accept', 'unaccept', 'undo')),
    attribute_code varchar(100) NOT NULL,
    detail         text NOT NULL,
    affected       bigint NOT NULL DEFAULT 0,
    resolved_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resolved_by    varchar(200) NOT NULL
);
INSERT INTO quarantine_resolutions_new SELECT * FROM quarantine_resolutions;
DROP TABLE quarantine_resolutions;
ALTER TABLE quarantine_resolutions_new RENAME TO quarantine_resolutions;
