-- Results of `verify`: the migration status shows the last one, and archiving requires a
-- clean one since the last write to legacy.
CREATE TABLE verify_runs (
    id          bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    finished_at timestamptz NOT NULL DEFAULT now(),
    checked     bigint NOT NULL,
    drifted     bigint NOT NULL,
    report      jsonb NOT NULL
);
