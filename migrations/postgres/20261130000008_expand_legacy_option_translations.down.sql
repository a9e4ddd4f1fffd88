-- A legacy table holds the marketplace's data: migrating down never drops it.
SELECT 1;
