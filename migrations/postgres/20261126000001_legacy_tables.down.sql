-- The legacy tables belong to the marketplace and hold its data: migrating down never drops
-- them. Archiving them is the job of `unified-attributes archive`.
SELECT 1;
