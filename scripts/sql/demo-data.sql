-- Sample rows for ./scripts/demo.sh and the compose demo; the fake platforms are seeded with the same tokens
-- (demo-seed.json). The original schema's timestamps are `timestamp` holding UTC, hence `now() AT TIME ZONE 'UTC'`.
INSERT INTO etsy_users (user_id, access_token, refresh_token, token_expires_at, updated_at) VALUES
  ('00000000-0000-0000-0000-0000000e0001', '1001.demo-at-alice', '1001.demo-rt-alice', (now() AT TIME ZONE 'UTC') + interval '4 minutes', (now() AT TIME ZONE 'UTC') - interval '1 day'),
  ('00000000-0000-0000-0000-0000000e0002', '1002.demo-at-bob',   '1002.demo-rt-bob',   (now() AT TIME ZONE 'UTC') - interval '2 hours', (now() AT TIME ZONE 'UTC') - interval '1 day'),
  ('00000000-0000-0000-0000-0000000e0003', '1003.demo-at-carol', '1003.demo-rt-carol', (now() AT TIME ZONE 'UTC') + interval '1 minute', (now() AT TIME ZONE 'UTC') - interval '1 day'),  -- revoked at Etsy
  ('00000000-0000-0000-0000-0000000e0004', '1004.demo-at-dave',  '1004.demo-rt-dave',  (now() AT TIME ZONE 'UTC') + interval '50 minutes', (now() AT TIME ZONE 'UTC') - interval '1 day'), -- not due yet
  ('00000000-0000-0000-0000-0000000e0005', '1005.demo-at-erin',  '1005.demo-rt-erin',  NULL, (now() AT TIME ZONE 'UTC') - interval '1 day');                         -- no expiry: skipped

INSERT INTO shopify_stores (id, shop_domain, access_token, is_active, updated_at) VALUES
  ('00000000-0000-0000-0000-00000005f001', 'alpha.myshopify.com',   'shpat_demo_alpha',   true, (now() AT TIME ZONE 'UTC') - interval '1 day'),
  ('00000000-0000-0000-0000-00000005f002', 'bravo.myshopify.com',   'shpat_demo_bravo',   true, (now() AT TIME ZONE 'UTC') - interval '1 day'),
  ('00000000-0000-0000-0000-00000005f003', 'charlie.myshopify.com', 'shpat_demo_charlie', true, (now() AT TIME ZONE 'UTC') - interval '1 day'),
  ('00000000-0000-0000-0000-00000005f004', 'delta.myshopify.com',   'shpat_demo_delta',   true, (now() AT TIME ZONE 'UTC') - interval '1 day'),  -- uninstalled: 401
  ('00000000-0000-0000-0000-00000005f005', 'echo.myshopify.com',    'shpat_demo_echo',    true, (now() AT TIME ZONE 'UTC') - interval '1 day'),  -- locked shop: 423
  ('00000000-0000-0000-0000-00000005f006', 'foxtrot.myshopify.com', 'shpat_demo_foxtrot', false, (now() AT TIME ZONE 'UTC') - interval '1 day'); -- already inactive

-- An expiring offline token (scripts/sql/shopify-expiring-tokens.sql adds the columns), due in 3 minutes: refreshed.
INSERT INTO shopify_stores (id, shop_domain, access_token, refresh_token, token_expires_at, refresh_token_expires_at, updated_at) VALUES
  ('00000000-0000-0000-0000-00000005f007', 'golf.myshopify.com', 'shpat_demo_golf', 'shprt_demo_golf',
   now() + interval '3 minutes', now() + interval '60 days', (now() AT TIME ZONE 'UTC') - interval '1 day');
