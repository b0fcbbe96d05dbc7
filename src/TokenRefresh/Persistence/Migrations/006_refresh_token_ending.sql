-- A refresh token that does not rotate and ends on a fixed day is announced ahead of that day, while it still works,
-- under a row of its own ('<platform>:ending'), so that its refreshes and failures (the platform's own row) are left as
-- they are. The view and NOTIFY name it by its platform.
CREATE OR REPLACE VIEW token_refresh_needs_reauth AS
SELECT split_part(platform, ':', 1) AS platform, account_id, last_error AS reason, last_error_at AS flagged_at, token_hash
FROM token_refresh_state
WHERE needs_reauth;

CREATE OR REPLACE FUNCTION token_refresh_notify_reauth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.needs_reauth AND (TG_OP = 'INSERT' OR NOT OLD.needs_reauth OR OLD.token_hash IS DISTINCT FROM NEW.token_hash) THEN
        PERFORM pg_notify('tokenrefresh_reauth', json_build_object(
            'event', 'needs_reauth', 'platform', split_part(NEW.platform, ':', 1), 'account_id', NEW.account_id,
            'reason', NEW.last_error, 'at', NEW.updated_at)::text);
    END IF;
    RETURN NULL;
END
$$;
