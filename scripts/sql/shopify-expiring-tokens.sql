-- For the main application: the columns of Shopify's expiring offline tokens (mandatory for public apps
-- from 2027-01-01). Nullable: stores without a refresh token keep their non-expiring token and are
-- validated as before; stores with one are refreshed by the service before token_expires_at.
-- Safe to run more than once. Run scripts/sql/service-grants.sql again afterwards.
ALTER TABLE shopify_stores
    ADD COLUMN IF NOT EXISTS refresh_token            text,
    ADD COLUMN IF NOT EXISTS token_expires_at         timestamptz,
    ADD COLUMN IF NOT EXISTS refresh_token_expires_at timestamptz;

-- Makes the due-store query an index range scan, as for etsy_users.
CREATE INDEX IF NOT EXISTS shopify_stores_token_expires_at_idx
    ON shopify_stores (token_expires_at)
    WHERE refresh_token IS NOT NULL AND is_active;
