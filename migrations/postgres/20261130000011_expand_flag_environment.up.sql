-- The flag variables the environment set (as text; NULL = unset) when a replica last started.
-- Stored runtime flags win over the environment across restarts; a variable *set or changed*
-- since it was last seen is applied once as a runtime change (guardrails, audit), so that the
-- seed's `kubectl set env … USE_UNIFIED_ATTRIBUTES=false` takes effect.
CREATE TABLE IF NOT EXISTS flag_environment (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    use_unified     varchar(20),
    unified_percent varchar(20),
    fallback        varchar(20),
    dual_write      varchar(20),
    shadow_percent  varchar(20),
    seen_at         timestamptz NOT NULL DEFAULT now()
);
