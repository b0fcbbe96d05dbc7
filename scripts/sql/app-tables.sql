-- The main application's tables, exactly as the original service's README documents them ("Database Schema":
-- etsy_users keyed by user_id, shopify_stores by id), with a few columns of the application's own, and no index
-- beyond the primary keys (recommended-indexes.sql has the ones docs/database.md recommends). They belong to the main
-- application: this copy is for development, the tests and the demo. The service reads the key and the column
-- types from the catalog; it works as well on tables keyed id, and with timestamptz columns.
-- Timestamps are `timestamp without time zone` holding UTC, as a service written with naive UTC datetimes has them.
CREATE EXTENSION IF NOT EXISTS pgcrypto; -- gen_random_uuid() before PostgreSQL 13

CREATE TABLE IF NOT EXISTS etsy_users (
    user_id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),   -- User UUID (primary key)
    access_token      text,                                         -- Current OAuth access token
    refresh_token     text,                                         -- OAuth refresh token
    token_expires_at  timestamp,                                    -- Token expiration timestamp
    updated_at        timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'), -- Last update timestamp
    -- The application's own columns: the service never reads or writes them.
    etsy_user_id      bigint,
    shop_name         text,
    created_at        timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE IF NOT EXISTS shopify_stores (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),   -- Store UUID (primary key)
    shop_domain       text NOT NULL,                                -- Shopify shop domain
    access_token      text,                                         -- Shopify access token
    is_active         boolean NOT NULL DEFAULT true,                -- Whether the store is active
    updated_at        timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'), -- Last update timestamp
    -- The application's own columns.
    owner_id          uuid,
    scope             text,
    installed_at      timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
