-- The compose demo's least-privilege role for the service (local only; its grants come from
-- service-grants.sql once `tokenrefresh migrate` has created the service's table).
CREATE ROLE tokenrefresh LOGIN PASSWORD 'demo-service-only';
