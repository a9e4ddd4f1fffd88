DROP TABLE IF EXISTS monolith_attributes;
