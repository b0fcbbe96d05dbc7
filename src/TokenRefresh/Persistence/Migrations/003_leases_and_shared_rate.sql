-- Claims without a held transaction: a lease says that an account's refresh token (of lease_token_hash) may be in
-- flight until lease_until. It is committed before the request is sent and cleared with the outcome; a lease that
-- runs out uncleared (its process died, or lost its database session, mid-call) makes the next claim treat that
-- attempt's outcome as unknown. lease_holder names the process ("host/pid/claim"), for operators.
ALTER TABLE token_refresh_state
    ADD COLUMN IF NOT EXISTS lease_until       timestamptz,
    ADD COLUMN IF NOT EXISTS lease_token_hash  text,
    ADD COLUMN IF NOT EXISTS lease_holder      text;

-- One rate limit for every replica (a platform's limits are per API key): the next moment a call may start, spaced
-- 1/rate apart by the database's clock, which every replica shares; a pause after a 429 that all replicas honour; and
-- the platform's daily quota as its last answer gave it.
CREATE TABLE IF NOT EXISTS token_refresh_rate (
    platform         text PRIMARY KEY,                -- 'etsy'
    next_at          timestamptz NOT NULL,            -- the next call starts no earlier
    paused_until     timestamptz,                     -- a 429's Retry-After
    quota_per_day    integer,                         -- x-limit-per-day
    remaining_today  integer,                         -- x-remaining-today
    quota_seen_at    timestamptz,
    quota_warned_at  timestamptz                      -- the last "refreshes use too much of the daily quota" warning
);
