-- expand: a legacy table, created only if absent (the marketplace's database has it), never
-- altered. The Russian and Serbian labels of options, by attribute name and option value.
CREATE TABLE IF NOT EXISTS attribute_option_translations (
    id             serial PRIMARY KEY,
    attribute_name varchar(100) NOT NULL,
    option_value   varchar(255) NOT NULL,
    ru_translation text,
    sr_translation text,
    created_at     timestamp DEFAULT now(),
    updated_at     timestamp DEFAULT now(),
    UNIQUE (attribute_name, option_value)
);
