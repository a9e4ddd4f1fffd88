DELETE FROM backfill_quarantine WHERE kind = 'conflict';
ALTER TABLE backfill_quarantine DROP CONSTRAINT IF EXISTS backfill_quarantine_kind_check;
ALTER TABLE backfill_quarantine ADD CONSTRAINT backfill_quarantine_kind_check
    CHECK (kind IN ('orphan', 'empty', 'invalid', 'unknown', 'unreadable', 'refused'));
DROP TABLE IF EXISTS monolith_attributes;
