-- See the PostgreSQL migration. An SQLite file is this service's own: nobody writes its legacy
-- tables but the service, so there is no capture; the table is the change feed's outbox.
CREATE TABLE IF NOT EXISTS attribute_changes (
    id            integer PRIMARY KEY AUTOINCREMENT,
    position      integer UNIQUE,
    entity_type   text NOT NULL CHECK (entity_type IN ('listing', 'product', 'product_variant', 'attribute')),
    entity_id     integer NOT NULL,
    source        text NOT NULL CHECK (source IN ('service', 'direct')),
    attribute_ids text,
    old_document  text,
    changed_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    applied_at    text
);
CREATE INDEX IF NOT EXISTS attribute_changes_unsequenced ON attribute_changes (id) WHERE position IS NULL;
