-- expand: who owns what, as the marketplace's own tables record it — a listing its user, a
-- B2C product its storefront and a storefront its user. The marketplace's database has these;
-- they are created only where absent (the demo's older tables), and never changed otherwise.
CREATE TABLE IF NOT EXISTS storefronts (
    id      bigint PRIMARY KEY,
    user_id bigint NOT NULL,
    name    varchar(255) NOT NULL DEFAULT ''
);
ALTER TABLE marketplace_listings ADD COLUMN IF NOT EXISTS user_id bigint;
ALTER TABLE storefront_products ADD COLUMN IF NOT EXISTS storefront_id bigint;
