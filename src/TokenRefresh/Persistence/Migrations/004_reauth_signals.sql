-- The main application hears about users who must reconnect (docs/reauth.md).
-- A view it can join on its own tables: every account flagged needs_reauth, with the SHA-256 of the refresh token
-- that was refused, so a join can tell a user who has already reconnected (a new token) from one still waiting.
CREATE OR REPLACE VIEW token_refresh_needs_reauth AS
SELECT platform, account_id, last_error AS reason, last_error_at AS flagged_at, token_hash
FROM token_refresh_state
WHERE needs_reauth;

-- NOTIFY tokenrefresh_reauth when an account is flagged (sent at commit, so a rolled-back flag says nothing).
-- A Shopify store switched off is announced on the same channel by the service's own UPDATE of shopify_stores: the
-- main application's tables get no trigger. The payload never carries a token.
CREATE OR REPLACE FUNCTION token_refresh_notify_reauth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.needs_reauth AND (TG_OP = 'INSERT' OR NOT OLD.needs_reauth OR OLD.token_hash IS DISTINCT FROM NEW.token_hash) THEN
        PERFORM pg_notify('tokenrefresh_reauth', json_build_object(
            'event', 'needs_reauth', 'platform', NEW.platform, 'account_id', NEW.account_id,
            'reason', NEW.last_error, 'at', NEW.updated_at)::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS token_refresh_state_reauth ON token_refresh_state;
CREATE TRIGGER token_refresh_state_reauth
    AFTER INSERT OR UPDATE OF needs_reauth, token_hash ON token_refresh_state
    FOR EACH ROW EXECUTE FUNCTION token_refresh_notify_reauth();
