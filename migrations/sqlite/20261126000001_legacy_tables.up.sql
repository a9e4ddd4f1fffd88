-- Legacy tables of the marketplace, as they exist in the monolith's database. Created only
-- when absent: in production they already exist and belong to the marketplace.

CREATE TABLE IF NOT EXISTS marketplace_categories (
    id        integer PRIMARY KEY,
    parent_id integer REFERENCES marketplace_categories (id),
    name      varchar(255) NOT NULL,
    slug      varchar(255) NOT NULL,
    level     integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS marketplace_categories_parent_idx ON marketplace_categories (parent_id);

CREATE TABLE IF NOT EXISTS marketplace_listings (
    id          bigint PRIMARY KEY,
    category_id integer NOT NULL REFERENCES marketplace_categories (id),
    title       varchar(255) NOT NULL,
    status      varchar(20) NOT NULL DEFAULT 'active'
);
CREATE INDEX IF NOT EXISTS marketplace_listings_category_idx ON marketplace_listings (category_id);

CREATE TABLE IF NOT EXISTS storefront_products (
    id          bigint PRIMARY KEY,
    category_id integer NOT NULL REFERENCES marketplace_categories (id),
    attributes  text NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS storefront_product_variants (
    id                 bigint PRIMARY KEY,
    product_id         bigint NOT NULL REFERENCES storefront_products (id) ON DELETE CASCADE,
    variant_attributes text NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS storefront_product_variants_product_idx ON storefront_product_variants (product_id);

-- C2C definitions, bindings and values: the system in real use.
CREATE TABLE IF NOT EXISTS category_attributes (
    id                    integer PRIMARY KEY,
    name                  varchar(100) NOT NULL,
    display_name          varchar(255) NOT NULL,
    attribute_type        varchar(50) NOT NULL,
    options               text,
    validation_rules      text,
    is_searchable         boolean NOT NULL DEFAULT false,
    is_filterable         boolean NOT NULL DEFAULT true,
    is_required           boolean NOT NULL DEFAULT false,
    sort_order            integer NOT NULL DEFAULT 0,
    created_at            text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    custom_component      varchar(255),
    show_in_card          boolean NOT NULL DEFAULT true,
    show_in_list          boolean NOT NULL DEFAULT false,
    icon                  varchar(10),
    affects_stock         boolean NOT NULL DEFAULT false,
    is_variant_compatible boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS category_attributes_name_idx ON category_attributes (name);

CREATE TABLE IF NOT EXISTS category_attribute_mapping (
    category_id      integer NOT NULL REFERENCES marketplace_categories (id) ON DELETE CASCADE,
    attribute_id     integer NOT NULL REFERENCES category_attributes (id) ON DELETE CASCADE,
    is_enabled       boolean NOT NULL DEFAULT true,
    is_required      boolean,
    sort_order       integer NOT NULL DEFAULT 0,
    custom_component varchar(255),
    show_in_card     boolean,
    show_in_list     boolean,
    PRIMARY KEY (category_id, attribute_id)
);

CREATE TABLE IF NOT EXISTS listing_attribute_values (
    id            integer PRIMARY KEY,
    listing_id    integer NOT NULL REFERENCES marketplace_listings (id) ON DELETE CASCADE,
    attribute_id  integer NOT NULL REFERENCES category_attributes (id) ON DELETE CASCADE,
    text_value    text,
    numeric_value text,
    boolean_value boolean,
    json_value    text,
    unit          varchar(20),
    value_type    varchar(20) NOT NULL DEFAULT 'text',
    created_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (listing_id, attribute_id)
);

-- B2C variant axes and their catalogue of allowed options.
CREATE TABLE IF NOT EXISTS product_variant_attributes (
    id            integer PRIMARY KEY,
    name          varchar(100) NOT NULL,
    display_name  varchar(255) NOT NULL,
    type          varchar(50) NOT NULL,
    is_required   boolean NOT NULL DEFAULT false,
    sort_order    integer NOT NULL DEFAULT 0,
    affects_stock boolean NOT NULL DEFAULT false,
    created_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- Definitions are matched to variant axes by name, case-insensitively.
CREATE INDEX IF NOT EXISTS product_variant_attributes_name_idx ON product_variant_attributes (lower(name));

CREATE TABLE IF NOT EXISTS product_variant_attribute_values (
    id           integer PRIMARY KEY,
    attribute_id integer NOT NULL REFERENCES product_variant_attributes (id) ON DELETE CASCADE,
    value        varchar(255) NOT NULL,
    display_name varchar(255),
    color_hex    varchar(7),
    image_url    text,
    sort_order   integer NOT NULL DEFAULT 0,
    is_active    boolean NOT NULL DEFAULT true
);
CREATE INDEX IF NOT EXISTS product_variant_attribute_values_attribute_idx
    ON product_variant_attribute_values (attribute_id);

CREATE TABLE IF NOT EXISTS translations (
    id              integer PRIMARY KEY,
    entity_type     varchar(50) NOT NULL,
    entity_id       integer NOT NULL,
    language        varchar(5) NOT NULL,
    field_name      varchar(100) NOT NULL,
    translated_text text NOT NULL,
    UNIQUE (entity_type, entity_id, language, field_name)
);
