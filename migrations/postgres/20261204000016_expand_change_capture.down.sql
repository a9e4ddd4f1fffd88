DO $$
BEGIN
    IF to_regclass('listing_attribute_values') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture_insert ON listing_attribute_values;
        DROP TRIGGER IF EXISTS unified_attributes_capture_update ON listing_attribute_values;
        DROP TRIGGER IF EXISTS unified_attributes_capture_delete ON listing_attribute_values;
    END IF;
    IF to_regclass('category_attributes') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON category_attributes;
    END IF;
    IF to_regclass('category_attribute_mapping') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON category_attribute_mapping;
    END IF;
    IF to_regclass('storefront_products') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON storefront_products;
    END IF;
    IF to_regclass('storefront_product_variants') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS unified_attributes_capture ON storefront_product_variants;
    END IF;
END $$;
DROP FUNCTION IF EXISTS capture_listing_rows();
DROP FUNCTION IF EXISTS capture_document();
DROP FUNCTION IF EXISTS capture_definition();
DROP SEQUENCE IF EXISTS attribute_change_positions;
DROP TABLE IF EXISTS attribute_changes;
