-- Flags changed at runtime through the admin API (one row; absent until the first change),
-- and the audit trail of every change.
CREATE TABLE flag_state (
    id              integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    use_unified     boolean NOT NULL,
    unified_percent integer NOT NULL CHECK (unified_percent BETWEEN 0 AND 100),
    fallback        boolean NOT NULL,
    dual_write      boolean NOT NULL,
    shadow_percent  integer NOT NULL CHECK (shadow_percent BETWEEN 0 AND 100),
    updated_at      text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_by      varchar(200) NOT NULL
);

CREATE TABLE flag_audit (
    id         integer PRIMARY KEY AUTOINCREMENT,
    changed_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    changed_by varchar(200) NOT NULL,
    old_flags  text NOT NULL,
    new_flags  text NOT NULL,
    old_phase  varchar(20) NOT NULL,
    new_phase  varchar(20) NOT NULL
);
