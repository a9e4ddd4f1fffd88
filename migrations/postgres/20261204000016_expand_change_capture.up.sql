-- expand: every change of attribute values in the transaction that made it (a transactional
-- outbox), whoever made it:
--   source 'service'  a write through this service;
--   source 'direct'   a write that bypassed it — the marketplace's own code, a script, a DBA —
--                     captured by triggers on the legacy tables (as pgroll keeps versions in
--                     sync) and applied to unified by the service, through the same domain
--                     rules as a backfilled row, in a bounded lag (`applied_at`).
-- `position` is the commit-ordered place in the change feed, given by one sequencer at a time
-- to rows already committed: a consumer reading `position > cursor` misses none and sees none
-- before its commit.
CREATE TABLE IF NOT EXISTS attribute_changes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position      bigint UNIQUE,
    -- values of a listing, product or variant; or a definition with its bindings ('attribute',
    -- the legacy attribute id: its admin code edits category_attributes and the mapping)
    entity_type   varchar(20) NOT NULL
        CHECK (entity_type IN ('listing', 'product', 'product_variant', 'attribute')),
    entity_id     bigint NOT NULL,
    source        varchar(10) NOT NULL CHECK (source IN ('service', 'direct')),
    -- direct listing rows: the legacy attribute ids their statement touched
    attribute_ids integer[],
    -- direct document writes: the document before the change (NULL: the row was inserted)
    old_document  jsonb,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    applied_at    timestamptz
);
CREATE INDEX IF NOT EXISTS attribute_changes_unsequenced ON attribute_changes (id) WHERE position IS NULL;
CREATE INDEX IF NOT EXISTS attribute_changes_unapplied ON attribute_changes (id)
    WHERE source = 'direct' AND applied_at IS NULL;
CREATE SEQUENCE IF NOT EXISTS attribute_change_positions OWNED BY attribute_changes.position;

-- The capture. A transaction of this service says so (`unified_attributes.writer`, set in its
-- BEGIN): its own legacy writes are not applied twice. A failure here is a warning, never the
-- marketplace's error: its transaction always commits as it would without us. The functions
-- keep this migration's search path, whichever session fires them.
CREATE OR REPLACE FUNCTION capture_listing_rows() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF current_setting('unified_attributes.writer', true) = 'service' THEN
        RETURN NULL;
    END IF;
    BEGIN
        INSERT INTO attribute_changes (entity_type, entity_id, source, attribute_ids)
        SELECT 'listing', listing_id, 'direct', array_agg(DISTINCT attribute_id)
        FROM changed_rows GROUP BY listing_id;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'unified attributes: a change of listing_attribute_values was not captured: %', SQLERRM;
    END;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION capture_document() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    kind text := TG_ARGV[0];
    before jsonb;
    after jsonb;
    entity bigint;
BEGIN
    IF current_setting('unified_attributes.writer', true) = 'service' THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF kind = 'product' THEN
            before := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) -> 'attributes' END;
            after := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) -> 'attributes' END;
        ELSE
            before := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) -> 'variant_attributes' END;
            after := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) -> 'variant_attributes' END;
        END IF;
        IF TG_OP = 'UPDATE' AND before IS NOT DISTINCT FROM after THEN
            RETURN NULL;
        END IF;
        entity := CASE WHEN TG_OP = 'DELETE' THEN (to_jsonb(OLD) ->> 'id')::bigint
                       ELSE (to_jsonb(NEW) ->> 'id')::bigint END;
        INSERT INTO attribute_changes (entity_type, entity_id, source, old_document)
        VALUES (kind, entity, 'direct', COALESCE(before, 'null'::jsonb));
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'unified attributes: a change of a % document was not captured: %', kind, SQLERRM;
    END;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION capture_definition() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    attribute bigint;
BEGIN
    IF current_setting('unified_attributes.writer', true) = 'service' THEN
        RETURN NULL;
    END IF;
    BEGIN
        attribute := CASE WHEN TG_OP = 'DELETE' THEN (to_jsonb(OLD) ->> TG_ARGV[0])::bigint
                          ELSE (to_jsonb(NEW) ->> TG_ARGV[0])::bigint END;
        INSERT INTO attribute_changes (entity_type, entity_id, source)
        VALUES ('attribute', attribute, 'direct');
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'unified attributes: a change of % was not captured: %', TG_TABLE_NAME, SQLERRM;
    END;
    RETURN NULL;
END $$;

-- On the marketplace's tables where they are (not while archived: restore brings the triggers
-- back with the tables). Statement triggers over transition tables: the monolith's save (a
-- delete and a multi-row insert of a listing's rows) costs two captured rows per listing, not
-- one per value.
DO $$
BEGIN
    IF to_regclass('listing_attribute_values') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture_insert ON listing_attribute_values;
        DROP TRIGGER IF EXISTS unified_attributes_capture_update ON listing_attribute_values;
        DROP TRIGGER IF EXISTS unified_attributes_capture_delete ON listing_attribute_values;
        CREATE TRIGGER unified_attributes_capture_insert AFTER INSERT ON listing_attribute_values
            REFERENCING NEW TABLE AS changed_rows
            FOR EACH STATEMENT EXECUTE FUNCTION capture_listing_rows();
        CREATE TRIGGER unified_attributes_capture_update AFTER UPDATE ON listing_attribute_values
            REFERENCING NEW TABLE AS changed_rows
            FOR EACH STATEMENT EXECUTE FUNCTION capture_listing_rows();
        CREATE TRIGGER unified_attributes_capture_delete AFTER DELETE ON listing_attribute_values
            REFERENCING OLD TABLE AS changed_rows
            FOR EACH STATEMENT EXECUTE FUNCTION capture_listing_rows();
    END IF;
    IF to_regclass('category_attributes') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON category_attributes;
        CREATE TRIGGER unified_attributes_capture AFTER INSERT OR UPDATE OR DELETE ON category_attributes
            FOR EACH ROW EXECUTE FUNCTION capture_definition('id');
    END IF;
    IF to_regclass('category_attribute_mapping') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON category_attribute_mapping;
        CREATE TRIGGER unified_attributes_capture AFTER INSERT OR UPDATE OR DELETE ON category_attribute_mapping
            FOR EACH ROW EXECUTE FUNCTION capture_definition('attribute_id');
    END IF;
    IF to_regclass('storefront_products') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON storefront_products;
        CREATE TRIGGER unified_attributes_capture AFTER INSERT OR UPDATE OR DELETE ON storefront_products
            FOR EACH ROW EXECUTE FUNCTION capture_document('product');
    END IF;
    IF to_regclass('storefront_product_variants') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON storefront_product_variants;
        CREATE TRIGGER unified_attributes_capture AFTER INSERT OR UPDATE OR DELETE ON storefront_product_variants
            FOR EACH ROW EXECUTE FUNCTION capture_document('product_variant');
    END IF;
END $$;
