-- The marketplace's own half-migration as a source (its `unified_*` tables in `public`):
--   monolith_attributes  which of its definitions each of ours came from (or was matched to
--                        through its legacy ids), so a write of such a value reaches its table
--                        too, and verify and archive know the source;
--   kind 'conflict'      both sources held a different value of one entity and attribute: the
--                        newer was kept, the other is quarantined with both in its reason.
-- Additive: an older binary neither reads the map nor writes the kind.
CREATE TABLE IF NOT EXISTS monolith_attributes (
    monolith_attribute_id integer PRIMARY KEY,
    attribute_id          integer NOT NULL REFERENCES unified_attributes (id) ON DELETE CASCADE,
    monolith_code         varchar(100) NOT NULL
);
CREATE INDEX IF NOT EXISTS monolith_attributes_attribute_idx ON monolith_attributes (attribute_id);

ALTER TABLE backfill_quarantine DROP CONSTRAINT IF EXISTS backfill_quarantine_kind_check;
ALTER TABLE backfill_quarantine ADD CONSTRAINT backfill_quarantine_kind_check
    CHECK (kind IN ('orphan', 'empty', 'invalid', 'unknown', 'unreadable', 'refused', 'conflict'));
