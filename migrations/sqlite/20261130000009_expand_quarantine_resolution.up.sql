-- expand: how operators resolve the quarantine. An alias maps another spelling of an option
-- (`дизель`, `БУ`) to it, for the attribute with that id (the same in both stores), ignoring
-- case (`alias_key` is the trimmed lower-case alias). Every resolution — alias, option added,
-- values moved to another attribute — is recorded with who made it and what it touched.
CREATE TABLE attribute_option_aliases (
    attribute_id   bigint NOT NULL,
    alias_key      text NOT NULL,
    alias          text NOT NULL,
    option_value   text NOT NULL,
    attribute_code varchar(100) NOT NULL,
    created_at     text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    created_by     varchar(200) NOT NULL,
    PRIMARY KEY (attribute_id, alias_key)
);

CREATE TABLE quarantine_resolutions (
    id             integer PRIMARY KEY AUTOINCREMENT,
    action         varchar(20) NOT NULL CHECK (action IN ('alias', 'option', 'move')),
    attribute_code varchar(100) NOT NULL,
    detail         text NOT NULL,
    affected       bigint NOT NULL DEFAULT 0,
    resolved_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resolved_by    varchar(200) NOT NULL
);
