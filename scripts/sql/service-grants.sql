-- Least privilege for the service's database role, named tokenrefresh, written from the platforms' registrations (a
-- test keeps it so). Run as the tables' owner, after `tokenrefresh migrate` (which creates the service's own tables), e.g.:
--   psql "$OWNER_DATABASE_URL" -c "CREATE ROLE tokenrefresh LOGIN PASSWORD 'a-long-random-password'"
--   psql "$OWNER_DATABASE_URL" -f scripts/sql/service-grants.sql
-- The service can then read only the columns it needs and update only the columns it writes. Each table's
-- key column is read from the catalog (user_id and id in the original schema), as the service does.
GRANT USAGE ON SCHEMA public TO tokenrefresh;

DO $$
BEGIN
    -- etsy_users
    REVOKE ALL ON etsy_users FROM tokenrefresh;
    EXECUTE format('GRANT SELECT (%I, refresh_token, token_expires_at), UPDATE (access_token, refresh_token, token_expires_at, updated_at) ON etsy_users TO tokenrefresh',
        (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = 'etsy_users'::regclass AND i.indisprimary LIMIT 1));

    -- shopify_stores
    REVOKE ALL ON shopify_stores FROM tokenrefresh;
    EXECUTE format('GRANT SELECT (%I, shop_domain, access_token, is_active), UPDATE (is_active, updated_at) ON shopify_stores TO tokenrefresh',
        (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = 'shopify_stores'::regclass AND i.indisprimary LIMIT 1));
    -- What the table may have, when it has all of it (access_token, refresh_token, token_expires_at, refresh_token_expires_at).
    IF (SELECT count(*) FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'shopify_stores' AND column_name IN ('access_token', 'refresh_token', 'token_expires_at', 'refresh_token_expires_at')) = 4 THEN
        GRANT SELECT (access_token, refresh_token, token_expires_at, refresh_token_expires_at), UPDATE (access_token, refresh_token, token_expires_at, refresh_token_expires_at) ON shopify_stores TO tokenrefresh;
    END IF;

    -- ebay_users, when the main application has it
    IF to_regclass('ebay_users') IS NOT NULL THEN
        REVOKE ALL ON ebay_users FROM tokenrefresh;
        EXECUTE format('GRANT SELECT (%I, refresh_token, token_expires_at, refresh_token_expires_at), UPDATE (access_token, token_expires_at, updated_at) ON ebay_users TO tokenrefresh',
            (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = 'ebay_users'::regclass AND i.indisprimary LIMIT 1));
    END IF;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON token_refresh_state TO tokenrefresh;
GRANT SELECT, INSERT, UPDATE ON token_refresh_rate, token_refresh_notices TO tokenrefresh;
GRANT SELECT ON token_refresh_migrations TO tokenrefresh;
