DELETE FROM quarantine_resolutions WHERE action IN ('accept', 'unaccept', 'undo');
CREATE TABLE quarantine_resolutions_old (
    id             integer PRIMARY KEY AUTOINCREMENT,
    action         varchar(20) NOT NULL CHECK (action IN ('alias', 'option', 'move')),
    attribute_code varchar(100) NOT NULL,
    detail         text NOT NULL,
    affected       bigint NOT NULL DEFAULT 0,
    resolved_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resolved_by    varchar(200) NOT NULL
);
INSERT INTO quarantine_resolutions_old SELECT * FROM quarantine_resolutions;
DROP TABLE quarantine_resolutions;
ALTER TABLE quarantine_resolutions_old RENAME TO quarantine_resolutions;
DROP INDEX IF EXISTS backfill_quarantine_unsettled;
ALTER TABLE backfill_quarantine DROP COLUMN accepted_at;
ALTER TABLE backfill_quarantine DROP COLUMN accepted_by;
ALTER TABLE backfill_quarantine DROP COLUMN shown_value;
ALTER TABLE backfill_quarantine DROP COLUMN kind;
