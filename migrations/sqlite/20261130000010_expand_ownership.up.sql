-- expand: who owns what — a listing its user, a B2C product its storefront and a storefront its
-- user, as the marketplace's tables record it (SQLite databases are this service's own).
CREATE TABLE IF NOT EXISTS storefronts (
    id      integer PRIMARY KEY,
    user_id integer NOT NULL,
    name    varchar(255) NOT NULL DEFAULT ''
);
ALTER TABLE marketplace_listings ADD COLUMN user_id integer;
ALTER TABLE storefront_products ADD COLUMN storefront_id integer;
