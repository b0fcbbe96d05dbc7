-- For the main application: the table of its eBay users, as a team adds it. eBay's user tokens: an access token of 2
-- hours, and a refresh token that does not rotate and ends about 18 months after the user's consent (the consent's
-- refresh_token_expires_in, stored as refresh_token_expires_at). The service refreshes eBay's access tokens only when
-- EBAY_CLIENT_ID is set, and asks users to reconnect EBAY_REAUTH_AHEAD_DAYS before their refresh token ends.
-- Timestamps hold UTC (timestamptz works too). Safe to run more than once; run scripts/sql/service-grants.sql again afterwards.
CREATE EXTENSION IF NOT EXISTS pgcrypto; -- gen_random_uuid() before PostgreSQL 13

CREATE TABLE IF NOT EXISTS ebay_users (
    user_id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    access_token              text,
    refresh_token             text,
    token_expires_at          timestamp,
    refresh_token_expires_at  timestamp,
    updated_at                timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- Recommended, as for etsy_users (recommended-indexes.sql): the due-user query becomes an index range scan.
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS ebay_users_token_expires_at_idx
--       ON ebay_users (token_expires_at) WHERE refresh_token IS NOT NULL;
