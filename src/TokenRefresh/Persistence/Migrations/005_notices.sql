-- Warnings said at most once an hour for every replica together (e.g. Shopify's cut-off for non-expiring tokens):
-- the replica that moves said_at on says it, the others stay quiet.
CREATE TABLE IF NOT EXISTS token_refresh_notices (
    notice   text PRIMARY KEY,        -- e.g. 'shopify_non_expiring_cutoff'
    said_at  timestamptz NOT NULL
);
