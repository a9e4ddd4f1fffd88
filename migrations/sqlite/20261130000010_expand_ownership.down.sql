-- SQLite has no ADD COLUMN IF NOT EXISTS: the owner columns go, so that the migration can be
-- applied again. Storefronts stay (the up creates them only when absent).
ALTER TABLE storefront_products DROP COLUMN storefront_id;
ALTER TABLE marketplace_listings DROP COLUMN user_id;
