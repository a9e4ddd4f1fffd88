DROP TABLE IF EXISTS attribute_changes;
