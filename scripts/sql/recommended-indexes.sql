-- Indexes the service does not need to be correct, and that make its queries cheap on large tables: the due-token
-- queries become index range scans instead of a scan of the whole table each cycle. Run as the tables' owner, at
-- any time (CONCURRENTLY: no write is blocked while they build); safe to run more than once.
CREATE INDEX CONCURRENTLY IF NOT EXISTS etsy_users_token_expires_at_idx
    ON etsy_users (token_expires_at)
    WHERE refresh_token IS NOT NULL;

-- `tokenrefresh refresh --shop` and the main application look stores up by domain.
CREATE INDEX CONCURRENTLY IF NOT EXISTS shopify_stores_shop_domain_idx
    ON shopify_stores (shop_domain);
