-- The main application's tables, as the service expects them. They belong to the main application:
-- this copy is for development, the tests and the demo. The service reads and writes only the columns
-- named here, and works when the tables have more columns of the application's own.
CREATE EXTENSION IF NOT EXISTS pgcrypto; -- gen_random_uuid() before PostgreSQL 13

CREATE TABLE IF NOT EXISTS etsy_users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    access_token      text,
    refresh_token     text,
    token_expires_at  timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Makes the due-token query an index range scan: the main application should create it too.
CREATE INDEX IF NOT EXISTS etsy_users_token_expires_at_idx
    ON etsy_users (token_expires_at)
    WHERE refresh_token IS NOT NULL;

CREATE TABLE IF NOT EXISTS shopify_stores (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    shop_domain   text NOT NULL UNIQUE,
    access_token  text,
    is_active     boolean NOT NULL DEFAULT true,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The active-store query reads only active rows.
CREATE INDEX IF NOT EXISTS shopify_stores_active_idx
    ON shopify_stores (id)
    WHERE is_active;
