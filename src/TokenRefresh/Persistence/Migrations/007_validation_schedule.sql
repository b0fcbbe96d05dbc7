-- A validated account's next check, so that a cycle finds the few due by an index range instead of comparing every
-- account with its state: set to its boundary of the validation interval when it passes, to its backoff's end when it
-- fails, and a lease ahead while a cycle validates it. NULL: not scheduled (yet); each cycle schedules those.
ALTER TABLE token_refresh_state ADD COLUMN IF NOT EXISTS next_check_at timestamptz;

CREATE INDEX IF NOT EXISTS token_refresh_state_check_idx
    ON token_refresh_state (platform, next_check_at, account_id)
    WHERE next_check_at IS NOT NULL;

-- The re-authorisation trigger runs only for a flagged row: a cycle writes a schedule for a million rows.
DROP TRIGGER IF EXISTS token_refresh_state_reauth ON token_refresh_state;
CREATE TRIGGER token_refresh_state_reauth
    AFTER INSERT OR UPDATE OF needs_reauth, token_hash ON token_refresh_state
    FOR EACH ROW WHEN (NEW.needs_reauth) EXECUTE FUNCTION token_refresh_notify_reauth();
