-- expand: a legacy table, created only if absent, never altered. The Russian and Serbian labels
-- of options, by attribute name and option value.
CREATE TABLE IF NOT EXISTS attribute_option_translations (
    id             integer PRIMARY KEY,
    attribute_name varchar(100) NOT NULL,
    option_value   varchar(255) NOT NULL,
    ru_translation text,
    sr_translation text,
    created_at     text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (attribute_name, option_value)
);
