DELETE FROM quarantine_resolutions WHERE action IN ('accept', 'unaccept', 'undo');
ALTER TABLE quarantine_resolutions DROP CONSTRAINT IF EXISTS quarantine_resolutions_action_check;
ALTER TABLE quarantine_resolutions ADD CONSTRAINT quarantine_resolutions_action_check
    CHECK (action IN ('alias', 'option', 'move'));
DROP INDEX IF EXISTS backfill_quarantine_unsettled;
ALTER TABLE backfill_quarantine
    DROP COLUMN kind, DROP COLUMN shown_value, DROP COLUMN accepted_by, DROP COLUMN accepted_at;
