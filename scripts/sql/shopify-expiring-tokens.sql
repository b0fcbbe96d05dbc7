-- For the main application: the columns of Shopify's expiring offline tokens (mandatory for public apps
-- from 2027-01-01). Nullable: stores without a refresh token keep their non-expiring token and are
-- validated as before; stores with one are refreshed by the service before token_expires_at.
-- The service sees the columns at its next cycle, no restart needed. Safe to run more than once.
-- Run scripts/sql/service-grants.sql again afterwards. timestamptz here; `timestamp` holding UTC works too.
ALTER TABLE shopify_stores
    ADD COLUMN IF NOT EXISTS refresh_token            text,
    ADD COLUMN IF NOT EXISTS token_expires_at         timestamptz,
    ADD COLUMN IF NOT EXISTS refresh_token_expires_at timestamptz;

-- Recommended, as for etsy_users (recommended-indexes.sql): the due-store query becomes an index range scan.
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS shopify_stores_token_expires_at_idx
--       ON shopify_stores (token_expires_at) WHERE refresh_token IS NOT NULL AND is_active;
