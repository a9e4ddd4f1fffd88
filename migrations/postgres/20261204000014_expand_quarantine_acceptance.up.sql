-- expand: the quarantine becomes part of the cut-over's evidence.
--   kind         what kept the value out of unified: 'orphan' (its entity or category does not
--                exist), 'empty' (the row holds no usable value), 'invalid' (the unified rules
--                refuse it: not an allowed option, a bad shape), 'unknown' (no definition of its
--                code), 'unreadable' (a document key that names nothing readable), 'refused'
--                (the database refused it). Orphans and empty rows are values users never saw.
--   shown_value  the value as users saw it (`Volkswagen`, `456`), what operators type.
--   accepted_*   an operator accepted that unified reads go without it.
-- Rows written before this step get their kind from their reason; an older binary that
-- inserts without these columns writes 'invalid', which blocks until reviewed.
ALTER TABLE backfill_quarantine
    ADD COLUMN kind        varchar(20) NOT NULL DEFAULT 'invalid'
        CHECK (kind IN ('orphan', 'empty', 'invalid', 'unknown', 'unreadable', 'refused')),
    ADD COLUMN shown_value text,
    ADD COLUMN accepted_by varchar(200),
    ADD COLUMN accepted_at timestamptz;

UPDATE backfill_quarantine SET kind = CASE
    WHEN reason IN ('the listing does not exist', 'the category does not exist',
                    'the attribute does not exist or cannot be read') THEN 'orphan'
    WHEN reason LIKE 'no usable % value in the row' THEN 'empty'
    WHEN reason LIKE 'no definition of this code%' OR reason LIKE 'no unified definition%' THEN 'unknown'
    WHEN reason LIKE 'the database refused it%' THEN 'refused'
    ELSE 'invalid' END;

-- What blocks unified reads without fallback: values users saw, not accepted.
CREATE INDEX backfill_quarantine_unsettled ON backfill_quarantine (attribute_code)
    WHERE kind NOT IN ('orphan', 'empty') AND accepted_at IS NULL;

ALTER TABLE quarantine_resolutions DROP CONSTRAINT IF EXISTS quarantine_resolutions_action_check;
ALTER TABLE quarantine_resolutions ADD CONSTRAINT quarantine_resolutions_action_check
    CHECK (action IN ('alias', 'option', 'move', 'accept', 'unaccept', 'undo'));
