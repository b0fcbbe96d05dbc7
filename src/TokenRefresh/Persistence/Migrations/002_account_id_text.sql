-- Accounts are named by the main application's primary key whatever its type (uuid, text, integer...),
-- read from the catalog: the state keeps it as text. A uuid keeps its text form, so existing rows still match.
ALTER TABLE token_refresh_state ALTER COLUMN account_id TYPE text USING account_id::text;
