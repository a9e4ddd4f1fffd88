-- The owners are the marketplace's data: migrating down never drops them.
SELECT 1;
