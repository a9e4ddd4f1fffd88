-- See the PostgreSQL migration. An SQLite database is this service's own file: no marketplace
-- tables are ever a source there, so the map stays empty and no conflict is ever quarantined.
CREATE TABLE IF NOT EXISTS monolith_attributes (
    monolith_attribute_id integer PRIMARY KEY,
    attribute_id          integer NOT NULL REFERENCES unified_attributes (id) ON DELETE CASCADE,
    monolith_code         text NOT NULL
);
CREATE INDEX IF NOT EXISTS monolith_attributes_attribute_idx ON monolith_attributes (attribute_id);
