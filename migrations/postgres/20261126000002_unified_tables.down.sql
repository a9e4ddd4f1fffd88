DROP TABLE migration_state;
DROP TABLE unified_attribute_values;
DROP TABLE unified_category_attributes;
DROP TABLE unified_attributes;
