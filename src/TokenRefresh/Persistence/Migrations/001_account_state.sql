-- The service's own table: per account, how its last attempts went and when to try again.
-- The main application's tables are never altered by the service's migrations.
CREATE TABLE IF NOT EXISTS token_refresh_state (
    platform              text        NOT NULL,             -- 'etsy' or 'shopify'
    account_id            uuid        NOT NULL,             -- the main table's primary key (text from 002_account_id_text)
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    last_error            text,                             -- a reason such as invalid_grant or timeout, never a token
    last_error_at         timestamptz,
    next_attempt_at       timestamptz,                      -- backing off until then
    needs_reauth          boolean     NOT NULL DEFAULT false,
    token_hash            text,                             -- SHA-256 of the token the failures were about: a new token starts afresh
    unknown_outcome_at    timestamptz,                      -- an attempt with that token may have reached the platform unanswered
    last_success_at       timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, account_id)
);

CREATE INDEX IF NOT EXISTS token_refresh_state_attention_idx
    ON token_refresh_state (platform, next_attempt_at)
    WHERE needs_reauth OR next_attempt_at IS NOT NULL;
