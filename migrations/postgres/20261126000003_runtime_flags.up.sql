-- Flags changed at runtime through the admin API (one row; absent until the first change),
-- and the audit trail of every change.
CREATE TABLE flag_state (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    use_unified     boolean NOT NULL,
    unified_percent smallint NOT NULL CHECK (unified_percent BETWEEN 0 AND 100),
    fallback        boolean NOT NULL,
    dual_write      boolean NOT NULL,
    shadow_percent  smallint NOT NULL CHECK (shadow_percent BETWEEN 0 AND 100),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      varchar(200) NOT NULL
);

CREATE TABLE flag_audit (
    id         bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by varchar(200) NOT NULL,
    old_flags  jsonb NOT NULL,
    new_flags  jsonb NOT NULL,
    old_phase  varchar(20) NOT NULL,
    new_phase  varchar(20) NOT NULL
);
