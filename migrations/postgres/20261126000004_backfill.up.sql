-- The backfill's durable progress (one row per entity kind) and the legacy rows it refused,
-- with the reason: nothing is dropped without a trace.
CREATE TABLE backfill_checkpoint (
    entity_type  varchar(20) PRIMARY KEY,
    last_id      bigint NOT NULL DEFAULT 0,
    migrated     bigint NOT NULL DEFAULT 0,
    quarantined  bigint NOT NULL DEFAULT 0,
    completed_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE backfill_quarantine (
    entity_type    varchar(20) NOT NULL,
    entity_id      bigint NOT NULL,
    attribute_code varchar(100) NOT NULL,
    raw_value      text,
    reason         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_type, entity_id, attribute_code)
);
