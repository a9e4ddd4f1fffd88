-- The unified attribute model, owned by this service. Decimals are kept as text so that
-- numeric(20,5) values stay exact; JSON as text.

-- Ids below 1,000,000 are reserved for attributes that keep their legacy C2C id; the
-- storage layer allocates new ids from 1,000,000 (SQLite has no identity start).
CREATE TABLE unified_attributes (
    id                                  integer PRIMARY KEY,
    code                                varchar(100) NOT NULL UNIQUE,
    name                                text NOT NULL DEFAULT '{}',
    display_name                        text NOT NULL DEFAULT '{}',
    attribute_type                      varchar(20) NOT NULL CHECK (attribute_type IN
        ('text', 'textarea', 'number', 'boolean', 'select', 'multiselect', 'date', 'color', 'size')),
    purpose                             varchar(10) NOT NULL DEFAULT 'regular'
        CHECK (purpose IN ('regular', 'variant', 'both')),
    options                             text NOT NULL DEFAULT '[]',
    validation_rules                    text NOT NULL DEFAULT '{}',
    ui_settings                         text NOT NULL DEFAULT '{}',
    is_searchable                       boolean NOT NULL DEFAULT false,
    is_filterable                       boolean NOT NULL DEFAULT true,
    is_required                         boolean NOT NULL DEFAULT false,
    is_variant_compatible               boolean NOT NULL DEFAULT false,
    affects_stock                       boolean NOT NULL DEFAULT false,
    affects_price                       boolean NOT NULL DEFAULT false,
    show_in_card                        boolean NOT NULL DEFAULT true,
    sort_order                          integer NOT NULL DEFAULT 0,
    is_active                           boolean NOT NULL DEFAULT true,
    legacy_category_attribute_id        integer UNIQUE,
    legacy_product_variant_attribute_id integer UNIQUE,
    created_at                          text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at                          text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE unified_category_attributes (
    category_id               integer NOT NULL REFERENCES marketplace_categories (id) ON DELETE CASCADE,
    attribute_id              integer NOT NULL REFERENCES unified_attributes (id) ON DELETE CASCADE,
    is_enabled                boolean NOT NULL DEFAULT true,
    is_required               boolean,
    is_filterable             boolean,
    is_searchable             boolean,
    show_in_card              boolean,
    show_in_list              boolean,
    custom_component          varchar(255),
    sort_order                integer NOT NULL DEFAULT 0,
    category_specific_options text,
    created_at                text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at                text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (category_id, attribute_id)
);
CREATE INDEX unified_category_attributes_attribute_idx ON unified_category_attributes (attribute_id);

CREATE TABLE unified_attribute_values (
    entity_type   varchar(20) NOT NULL CHECK (entity_type IN ('listing', 'product', 'product_variant')),
    entity_id     bigint NOT NULL,
    attribute_id  integer NOT NULL REFERENCES unified_attributes (id) ON DELETE CASCADE,
    text_value    text,
    numeric_value text,
    boolean_value boolean,
    date_value    text,
    json_value    text,
    unit          varchar(20),
    created_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (entity_type, entity_id, attribute_id)
);
CREATE INDEX unified_attribute_values_attribute_idx ON unified_attribute_values (attribute_id);

-- Facts about the migration that the flags alone cannot tell (one row).
CREATE TABLE migration_state (
    id                        integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    archived_at               text,
    unified_only_write_at     text,
    legacy_synced_at          text
);
INSERT INTO migration_state (id) VALUES (1);
