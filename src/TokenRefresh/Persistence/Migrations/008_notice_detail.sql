-- What a notice was about, where its time alone does not say: for 'leftovers_checked:<table>:<state keys>', PostgreSQL's
-- count of rows deleted from that table, and its file, when a search for deleted accounts' state last found none.
ALTER TABLE token_refresh_notices ADD COLUMN IF NOT EXISTS detail text;
