-- Every statement the service runs against the main application's tables, as built for this shape.

-- Etsy: count due
SELECT count(*)::int
FROM etsy_users a
LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND (a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') OR a.token_expires_at IS NULL);

-- Etsy: due page
SELECT a."user_id"::text AS Id, NULL AS Label, (a.token_expires_at AT TIME ZONE 'UTC') AS ExpiresAt
FROM etsy_users a
LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AND (s.lease_until IS NULL OR s.lease_until <= @Now)
  AND (@AfterId::text IS NULL OR (a.token_expires_at, a."user_id") > ((@AfterExpiry::timestamptz AT TIME ZONE 'UTC'), CAST(@AfterId AS uuid)))
ORDER BY a.token_expires_at, a."user_id"
LIMIT 500;

-- Etsy: no-expiry page
SELECT a."user_id"::text AS Id, NULL AS Label, NULL::timestamptz AS ExpiresAt
FROM etsy_users a
LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND a.token_expires_at IS NULL AND (@AfterId::text IS NULL OR a."user_id" > CAST(@AfterId AS uuid))
ORDER BY a."user_id"
LIMIT 500;

-- Etsy: find account
SELECT a."user_id"::text AS Id, NULL AS Label
FROM etsy_users a
WHERE a.refresh_token IS NOT NULL AND a."user_id"::text = @Key;

-- Etsy: claim
WITH account AS (
    SELECT a."user_id"::text AS Id, NULL AS Label, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
           (a.token_expires_at AT TIME ZONE 'UTC') AS AccessExpiresAt, s.xmin AS version, @Holder AS LeaseHolder,
           COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
           s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
           s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt,
           CASE WHEN s.lease_holder IS DISTINCT FROM @Holder THEN s.lease_token_hash END AS LeaseTokenHash,
           CASE WHEN s.lease_until IS NOT NULL AND s.lease_holder IS DISTINCT FROM @Holder THEN s.updated_at END AS LeasedAt,
           a.token_expires_at AS expiry, a."user_id" AS key
    FROM etsy_users a
    LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
    WHERE a."user_id" = ANY(CAST(@Ids AS uuid[])) AND a.refresh_token IS NOT NULL
      AND (s.account_id IS NULL
           OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
           OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
      AND a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AND (s.lease_until IS NULL OR s.lease_until <= @Now)
    ORDER BY a.token_expires_at, a."user_id"
    LIMIT @Count
    -- For this statement only: the main application, in the middle of writing the row, is left alone.
    FOR UPDATE OF a SKIP LOCKED),
claimed AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
    SELECT 'etsy', Id, @LeaseUntil, hash, @Holder, @Now FROM account
    ON CONFLICT (platform, account_id) DO UPDATE SET
        lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
        lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
    WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
       OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id)
           AND (s.lease_until IS NULL OR s.lease_until <= @Now)
           AND NOT (s.token_hash IS NOT DISTINCT FROM EXCLUDED.lease_token_hash AND s.unknown_outcome_at IS NOT NULL
                    AND s.unknown_outcome_at > @Now - make_interval(secs => @UnknownOutcomeWait))
           AND (s.token_hash IS DISTINCT FROM EXCLUDED.lease_token_hash OR (NOT s.needs_reauth AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= @Now)))
           AND (s.last_success_at IS NULL OR s.last_success_at < @CycleStart))
    RETURNING s.account_id)
SELECT a.*, a.Id IN (SELECT account_id FROM claimed) AS Claimed FROM account a ORDER BY a.expiry, a.key;

-- Etsy: forced claim
WITH account AS (
    SELECT a."user_id"::text AS Id, NULL AS Label, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
           (a.token_expires_at AT TIME ZONE 'UTC') AS AccessExpiresAt, s.xmin AS version, @Holder AS LeaseHolder,
           COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
           s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
           s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt,
           CASE WHEN s.lease_holder IS DISTINCT FROM @Holder THEN s.lease_token_hash END AS LeaseTokenHash,
           CASE WHEN s.lease_until IS NOT NULL AND s.lease_holder IS DISTINCT FROM @Holder THEN s.updated_at END AS LeasedAt,
           a.token_expires_at AS expiry, a."user_id" AS key
    FROM etsy_users a
    LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
    WHERE a."user_id" = ANY(CAST(@Ids AS uuid[])) AND a.refresh_token IS NOT NULL
    -- For this statement only: the main application, in the middle of writing the row, is left alone.
    FOR UPDATE OF a SKIP LOCKED),
claimed AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
    SELECT 'etsy', Id, @LeaseUntil, hash, @Holder, @Now FROM account
    ON CONFLICT (platform, account_id) DO UPDATE SET
        lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
        lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
    WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
       OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id)
           AND (s.lease_until IS NULL OR s.lease_until <= @Now)
           AND NOT (s.token_hash IS NOT DISTINCT FROM EXCLUDED.lease_token_hash AND s.unknown_outcome_at IS NOT NULL
                    AND s.unknown_outcome_at > @Now - make_interval(secs => @UnknownOutcomeWait)))
    RETURNING s.account_id)
SELECT a.*, a.Id IN (SELECT account_id FROM claimed) AS Claimed FROM account a ORDER BY a.expiry, a.key;

-- Etsy: store
WITH stored AS (
    UPDATE etsy_users a
    SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = (@ExpiresAt::timestamptz AT TIME ZONE 'UTC'),
        updated_at = (@Now::timestamptz AT TIME ZONE 'UTC')
    WHERE a."user_id" = CAST(@Id AS uuid) AND a.refresh_token IN (@Sent, @RefreshToken)
    RETURNING a."user_id"::text AS id),
state AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, last_success_at, updated_at)
    SELECT 'etsy', id, @Now, @Now FROM stored
    ON CONFLICT (platform, account_id) DO UPDATE SET
        consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
        token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at,
        lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL),
released AS (
    UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
    WHERE s.platform = 'etsy' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
SELECT 1 FROM stored;

-- Etsy: save state
INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, last_error, last_error_at,
    next_attempt_at, needs_reauth, token_hash, unknown_outcome_at, last_success_at, updated_at)
SELECT @Platform, @AccountId, @ConsecutiveFailures, @LastError, @LastErrorAt,
    @NextAttemptAt, @NeedsReauth, @TokenHash, @UnknownOutcomeAt, @LastSuccessAt, @Now
WHERE EXISTS (SELECT 1 FROM etsy_users a WHERE a."user_id" = CAST(@AccountId AS uuid))
ON CONFLICT (platform, account_id) DO UPDATE SET
    consecutive_failures = EXCLUDED.consecutive_failures, last_error = EXCLUDED.last_error,
    last_error_at = EXCLUDED.last_error_at, next_attempt_at = EXCLUDED.next_attempt_at,
    needs_reauth = EXCLUDED.needs_reauth, token_hash = EXCLUDED.token_hash,
    unknown_outcome_at = EXCLUDED.unknown_outcome_at,
    last_success_at = COALESCE(EXCLUDED.last_success_at, s.last_success_at), updated_at = EXCLUDED.updated_at,
    lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
WHERE s.lease_holder IS NULL OR s.lease_holder = @LeaseHolder;

-- Etsy: needs re-authorisation (metric)
SELECT count(*)
FROM token_refresh_state s JOIN etsy_users a ON a."user_id"::text = s.account_id
WHERE s.platform = 'etsy' AND s.needs_reauth AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex');

-- Etsy: accounts deleted (PostgreSQL's counts)
SELECT CASE WHEN current_setting('track_counts')::bool
            THEN pg_stat_get_tuples_deleted(c.oid) || '/' || pg_relation_filenode(c.oid) END AS Now,
       (SELECT n.detail FROM token_refresh_notices n WHERE n.notice = @Notice) AS Clean
FROM pg_class c
WHERE c.oid = to_regclass('etsy_users');

-- Etsy: deleted accounts' state
SELECT s.platform AS Platform, s.account_id AS AccountId
FROM token_refresh_state s
WHERE s.platform = ANY(@Keys)
  AND NOT EXISTS (SELECT 1 FROM etsy_users a WHERE a."user_id" = CAST(s.account_id AS uuid))
LIMIT 50000;

-- Etsy: deleted accounts' state removed
DELETE FROM token_refresh_state s
USING unnest(CAST(@Platforms AS text[]), CAST(@Ids AS text[])) AS gone(platform, account_id)
WHERE s.platform = gone.platform AND s.account_id = gone.account_id AND (s.lease_until IS NULL OR s.lease_until <= @Now)
  AND NOT EXISTS (SELECT 1 FROM etsy_users a WHERE a."user_id" = CAST(s.account_id AS uuid));

-- Etsy: refresh tokens ending
SELECT a."user_id"::text AS Id, NULL AS Label, (s.last_success_at + interval '90 days') AS ExpiresAt
FROM etsy_users a
LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL AND (s.last_success_at + interval '90 days') <= @WarnBefore
  AND NOT (COALESCE(s.needs_reauth, false) AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
ORDER BY 3
LIMIT 1000;

-- Etsy: daily quota
SELECT (SELECT count(*) FROM etsy_users a WHERE a.refresh_token IS NOT NULL) AS Accounts,
       r.quota_per_day AS PerDay, r.remaining_today AS Remaining
FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = 'etsy';

-- Etsy: daily quota (status)
SELECT (SELECT count(*) FROM etsy_users a WHERE a.refresh_token IS NOT NULL),
       r.quota_per_day, r.remaining_today, r.quota_seen_at
FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = 'etsy';

-- Etsy: status counts
SELECT count(*) FILTER (WHERE due AND callable AND eligible),
       count(*) FILTER (WHERE recent),
       count(*) FILTER (WHERE backing_off),
       count(*) FILTER (WHERE needs_reauth),
       count(*) FILTER (WHERE ending AND NOT needs_reauth),
       count(*) FILTER (WHERE NOT callable),
       count(*) FILTER (WHERE backing_off AND paused)
FROM (
    SELECT a."user_id"::text AS id, NULL AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           (s.last_success_at + interval '90 days') AS refresh_token_ends,
           a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AS due,
           true AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS backing_off,
           COALESCE((s.last_success_at + interval '90 days') <= @WarnBefore, false) AS ending,
           false AS paused
    FROM etsy_users a LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
    WHERE a.refresh_token IS NOT NULL
) accounts;

-- Etsy: status accounts
SELECT id AS Id, shop AS Shop,
       CASE WHEN NOT callable THEN 'not_called' WHEN needs_reauth THEN 'needs_reauth' WHEN backing_off THEN 'backing_off'
            ELSE 'refresh_token_expiring' END AS "Group",
       COALESCE(consecutive_failures, 0) AS ConsecutiveFailures, last_error AS LastError, last_error_at AS LastErrorAt,
       next_attempt_at AS NextAttemptAt, refresh_token_ends AS RefreshTokenExpiresAt
FROM (
    SELECT a."user_id"::text AS id, NULL AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           (s.last_success_at + interval '90 days') AS refresh_token_ends,
           a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AS due,
           true AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS backing_off,
           COALESCE((s.last_success_at + interval '90 days') <= @WarnBefore, false) AS ending,
           false AS paused
    FROM etsy_users a LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = a."user_id"::text
    WHERE a.refresh_token IS NOT NULL
) accounts
WHERE NOT callable OR needs_reauth OR backing_off OR (ending AND NOT needs_reauth)
ORDER BY 3 DESC, last_error_at DESC
LIMIT 500;

-- Shopify: schedule: find
SELECT st."id"::text AS Id, CASE WHEN s.token_hash IS NULL AND s.last_success_at IS NOT NULL THEN CASE WHEN @IntervalSeconds = 0 THEN s.last_success_at
     ELSE to_timestamp((floor((extract(epoch FROM s.last_success_at) - abs(hashtext(st."id"::text)::bigint) % @IntervalSeconds) / @IntervalSeconds) + 1)
                       * @IntervalSeconds + abs(hashtext(st."id"::text)::bigint) % @IntervalSeconds) END ELSE @Now END AS At, s.next_check_at AS Was
FROM shopify_stores st
LEFT JOIN token_refresh_state s ON s.platform = 'shopify' AND s.account_id = st."id"::text
WHERE st.is_active AND st.refresh_token IS NULL
  AND (s.account_id IS NULL OR s.next_check_at IS NULL
       OR (s.token_hash IS NULL AND s.next_check_at > @Now + make_interval(secs => greatest(@IntervalSeconds, @LeaseSeconds) + 60))
       OR (s.token_hash IS NOT NULL AND s.next_check_at > @Now
           AND s.token_hash IS DISTINCT FROM encode(sha256(convert_to(COALESCE(st.access_token, ''), 'UTF8')), 'hex')))
LIMIT @Most;

-- Shopify: schedule: set
WITH v AS (
    SELECT * FROM unnest(CAST(@Ids AS text[]), CAST(@Ats AS timestamptz[]), CAST(@Wases AS timestamptz[])) AS v(id, at, was)),
added AS (
    INSERT INTO token_refresh_state (platform, account_id, next_check_at, updated_at)
    SELECT 'shopify', v.id, v.at, @Now FROM v WHERE v.was IS NULL ORDER BY v.id
    ON CONFLICT (platform, account_id) DO NOTHING)
UPDATE token_refresh_state s SET next_check_at = v.at
FROM v
WHERE s.platform = 'shopify' AND s.account_id = v.id AND s.next_check_at IS NOT DISTINCT FROM v.was;

-- Shopify: schedule: all
INSERT INTO token_refresh_state AS s (platform, account_id, next_check_at, updated_at)
SELECT 'shopify', st."id"::text, CASE WHEN s.token_hash IS NULL AND s.last_success_at IS NOT NULL THEN CASE WHEN @IntervalSeconds = 0 THEN s.last_success_at
     ELSE to_timestamp((floor((extract(epoch FROM s.last_success_at) - abs(hashtext(st."id"::text)::bigint) % @IntervalSeconds) / @IntervalSeconds) + 1)
                       * @IntervalSeconds + abs(hashtext(st."id"::text)::bigint) % @IntervalSeconds) END ELSE @Now END, @Now
FROM shopify_stores st
LEFT JOIN token_refresh_state s ON s.platform = 'shopify' AND s.account_id = st."id"::text
WHERE st.is_active AND st.refresh_token IS NULL
  AND (s.account_id IS NULL OR s.next_check_at IS NULL
       OR (s.token_hash IS NULL AND s.next_check_at > @Now + make_interval(secs => greatest(@IntervalSeconds, @LeaseSeconds) + 60))
       OR (s.token_hash IS NOT NULL AND s.next_check_at > @Now
           AND s.token_hash IS DISTINCT FROM encode(sha256(convert_to(COALESCE(st.access_token, ''), 'UTF8')), 'hex')))
ORDER BY 2
ON CONFLICT (platform, account_id) DO UPDATE SET next_check_at = EXCLUDED.next_check_at;

-- Shopify: count due
SELECT count(*)::int
FROM token_refresh_state s
WHERE s.platform = 'shopify' AND s.next_check_at <= @Now;

-- Shopify: claim page
WITH page AS (
    SELECT s.account_id
    FROM token_refresh_state s
    WHERE s.platform = 'shopify' AND s.next_check_at <= @Now
    ORDER BY s.next_check_at, s.account_id
    LIMIT 500
    FOR UPDATE SKIP LOCKED)
UPDATE token_refresh_state s
SET next_check_at = CASE WHEN st."id" IS NULL OR NOT (st.is_active AND st.refresh_token IS NULL) THEN NULL
                         WHEN NOT (length(st.shop_domain) <= 77 AND st.shop_domain LIKE '_%.myshopify.com' AND left(st.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$') THEN @Now + make_interval(secs => greatest(@IntervalSeconds, @LeaseSeconds))
                         ELSE @Now + make_interval(secs => @LeaseSeconds) END
FROM page
LEFT JOIN shopify_stores st ON st."id" = CAST(page.account_id AS uuid)
WHERE s.platform = 'shopify' AND s.account_id = page.account_id
RETURNING s.account_id AS Id, st.shop_domain AS ShopDomain, COALESCE(st.access_token, '') AS Token,
          COALESCE(st.is_active AND st.refresh_token IS NULL AND (length(st.shop_domain) <= 77 AND st.shop_domain LIKE '_%.myshopify.com' AND left(st.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$'), false) AS Claimed,
          COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
           s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
           s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt;

-- Shopify: find account
SELECT st."id"::text AS Id, st.shop_domain AS ShopDomain
FROM shopify_stores st
WHERE st.shop_domain = @Key AND st.is_active AND st.refresh_token IS NULL;

-- Shopify: read one
SELECT st.access_token AS Token,
       COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
       s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
       s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt
FROM shopify_stores st
LEFT JOIN token_refresh_state s ON s.platform = 'shopify' AND s.account_id = st."id"::text
WHERE st."id" = CAST(@Id AS uuid) AND st.is_active AND st.refresh_token IS NULL;

-- Shopify: stores asked again (the incident guard)
SELECT st.shop_domain AS ShopDomain, st.access_token AS Token
FROM token_refresh_state s
JOIN shopify_stores st ON st."id" = CAST(s.account_id AS uuid)
WHERE s.platform = 'shopify' AND s.next_check_at IS NOT NULL AND s.token_hash IS NULL AND s.last_success_at IS NOT NULL
  AND NOT s.account_id = ANY (CAST(@Rejected AS text[]))
  AND st.is_active AND st.refresh_token IS NULL AND (length(st.shop_domain) <= 77 AND st.shop_domain LIKE '_%.myshopify.com' AND left(st.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$') AND st.access_token <> ''
ORDER BY s.next_check_at DESC, s.account_id DESC
LIMIT @Most;

-- Shopify: deactivate
WITH pending AS (
    SELECT 1 FROM token_refresh_state m
    WHERE m.platform = 'shopify_exchange' AND m.account_id = @Id AND m.token_hash = @Hash
      AND m.unknown_outcome_at > @Now - interval '7 days'),
deactivated AS (
    UPDATE shopify_stores st
    SET is_active = false, updated_at = (@Now::timestamptz AT TIME ZONE 'UTC')
    WHERE st."id" = CAST(@Id AS uuid) AND st.is_active AND st.access_token = @RejectedToken AND NOT EXISTS (SELECT 1 FROM pending)
    RETURNING st."id"::text AS id),
cleared AS (
    DELETE FROM token_refresh_state WHERE platform = 'shopify' AND account_id IN (SELECT id FROM deactivated)),
notified AS (
    SELECT pg_notify('tokenrefresh_reauth', json_build_object('event', 'deactivated', 'platform', 'shopify',
        'account_id', id::text, 'shop_domain', @Shop, 'reason', @Reason, 'at', @Now)::text) FROM deactivated)
-- Counted through the notification (one per store switched off), so that it is sent: a CTE nobody reads does not run.
SELECT (SELECT count(*) FROM notified) AS Deactivated, EXISTS (SELECT 1 FROM pending) AS ExchangePending;

-- Shopify: save validated
INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, needs_reauth, last_success_at, next_check_at, updated_at)
SELECT 'shopify', v.id, 0, false, v.at, CASE WHEN @IntervalSeconds = 0 THEN v.at
     ELSE to_timestamp((floor((extract(epoch FROM v.at) - abs(hashtext(v.id)::bigint) % @IntervalSeconds) / @IntervalSeconds) + 1)
                       * @IntervalSeconds + abs(hashtext(v.id)::bigint) % @IntervalSeconds) END, v.at
FROM unnest(CAST(@Ids AS text[]), CAST(@Ats AS timestamptz[])) AS v(id, at)
ORDER BY v.id
ON CONFLICT (platform, account_id) DO UPDATE SET
    consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
    token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at,
    next_check_at = EXCLUDED.next_check_at, updated_at = EXCLUDED.updated_at;

-- Shopify: save state
INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, last_error, last_error_at,
    next_attempt_at, needs_reauth, token_hash, unknown_outcome_at, last_success_at, next_check_at, updated_at)
SELECT @Platform, @AccountId, @ConsecutiveFailures, @LastError, @LastErrorAt,
    @NextAttemptAt, @NeedsReauth, @TokenHash, @UnknownOutcomeAt, @LastSuccessAt, @NextAttemptAt, @Now
WHERE EXISTS (SELECT 1 FROM shopify_stores a WHERE a."id" = CAST(@AccountId AS uuid))
ON CONFLICT (platform, account_id) DO UPDATE SET
    consecutive_failures = EXCLUDED.consecutive_failures, last_error = EXCLUDED.last_error,
    last_error_at = EXCLUDED.last_error_at, next_attempt_at = EXCLUDED.next_attempt_at,
    needs_reauth = EXCLUDED.needs_reauth, token_hash = EXCLUDED.token_hash,
    unknown_outcome_at = EXCLUDED.unknown_outcome_at,
    last_success_at = COALESCE(EXCLUDED.last_success_at, s.last_success_at), next_check_at = EXCLUDED.next_check_at, updated_at = EXCLUDED.updated_at,
    lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
WHERE s.lease_holder IS NULL OR s.lease_holder = @LeaseHolder;

-- Shopify: stores deleted (PostgreSQL's counts)
SELECT CASE WHEN current_setting('track_counts')::bool
            THEN pg_stat_get_tuples_deleted(c.oid) || '/' || pg_relation_filenode(c.oid) END AS Now,
       (SELECT n.detail FROM token_refresh_notices n WHERE n.notice = @Notice) AS Clean
FROM pg_class c
WHERE c.oid = to_regclass('shopify_stores');

-- Shopify: deleted stores' state
SELECT s.platform AS Platform, s.account_id AS AccountId
FROM token_refresh_state s
WHERE s.platform = ANY(@Keys)
  AND NOT EXISTS (SELECT 1 FROM shopify_stores a WHERE a."id" = CAST(s.account_id AS uuid))
LIMIT 50000;

-- Shopify: deleted stores' state removed
DELETE FROM token_refresh_state s
USING unnest(CAST(@Platforms AS text[]), CAST(@Ids AS text[])) AS gone(platform, account_id)
WHERE s.platform = gone.platform AND s.account_id = gone.account_id AND (s.lease_until IS NULL OR s.lease_until <= @Now)
  AND NOT EXISTS (SELECT 1 FROM shopify_stores a WHERE a."id" = CAST(s.account_id AS uuid));

-- Shopify: uncallable stores
SELECT count(*) OVER () AS Total, st."id"::text AS Id, st.shop_domain AS ShopDomain
FROM shopify_stores st
WHERE st.is_active AND NOT COALESCE((length(st.shop_domain) <= 77 AND st.shop_domain LIKE '_%.myshopify.com' AND left(st.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$'), false)
ORDER BY st.shop_domain
LIMIT 5;

-- Shopify: non-expiring stores (the cut-off)
SELECT count(*) FROM shopify_stores st
WHERE st.is_active AND COALESCE(st.access_token, '') <> '' AND st.refresh_token IS NULL;

-- Shopify: status counts
SELECT count(*) FILTER (WHERE due AND callable AND eligible),
       count(*) FILTER (WHERE recent),
       count(*) FILTER (WHERE backing_off),
       count(*) FILTER (WHERE needs_reauth),
       count(*) FILTER (WHERE ending AND NOT needs_reauth),
       count(*) FILTER (WHERE NOT callable),
       count(*) FILTER (WHERE backing_off AND paused)
FROM (
    SELECT a."id"::text AS id, a.shop_domain AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           NULL::timestamptz AS refresh_token_ends,
           (s.account_id IS NULL OR s.next_check_at IS NULL OR s.next_check_at <= @Now) AS due,
           COALESCE((length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$'), false) AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(COALESCE(a.access_token, ''), 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(COALESCE(a.access_token, ''), 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(COALESCE(a.access_token, ''), 'UTF8')), 'hex'), false)) AS backing_off,
           false AS ending,
           COALESCE(s.last_error = 'deactivation_paused', false) AS paused
    FROM shopify_stores a LEFT JOIN token_refresh_state s ON s.platform = 'shopify' AND s.account_id = a."id"::text
    WHERE a.is_active AND a.refresh_token IS NULL
) accounts;

-- Shopify: status accounts
SELECT id AS Id, shop AS Shop,
       CASE WHEN NOT callable THEN 'not_called' WHEN needs_reauth THEN 'needs_reauth' WHEN backing_off THEN 'backing_off'
            ELSE 'refresh_token_expiring' END AS "Group",
       COALESCE(consecutive_failures, 0) AS ConsecutiveFailures, last_error AS LastError, last_error_at AS LastErrorAt,
       next_attempt_at AS NextAttemptAt, refresh_token_ends AS RefreshTokenExpiresAt
FROM (
    SELECT a."id"::text AS id, a.shop_domain AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           NULL::timestamptz AS refresh_token_ends,
           (s.account_id IS NULL OR s.next_check_at IS NULL OR s.next_check_at <= @Now) AS due,
           COALESCE((length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$'), false) AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(COALESCE(a.access_token, ''), 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(COALESCE(a.access_token, ''), 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(COALESCE(a.access_token, ''), 'UTF8')), 'hex'), false)) AS backing_off,
           false AS ending,
           COALESCE(s.last_error = 'deactivation_paused', false) AS paused
    FROM shopify_stores a LEFT JOIN token_refresh_state s ON s.platform = 'shopify' AND s.account_id = a."id"::text
    WHERE a.is_active AND a.refresh_token IS NULL
) accounts
WHERE NOT callable OR needs_reauth OR backing_off OR (ending AND NOT needs_reauth)
ORDER BY 3 DESC, last_error_at DESC
LIMIT 500;

-- Shopify expiring: count due
SELECT count(*)::int
FROM shopify_stores a
LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
WHERE a.is_active AND a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND (length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$')
  AND (a.token_expires_at <= @DueBefore OR a.token_expires_at IS NULL);

-- Shopify expiring: due page
SELECT a."id"::text AS Id, a.shop_domain AS Label, a.token_expires_at AS ExpiresAt
FROM shopify_stores a
LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
WHERE a.is_active AND a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND (length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$')
  AND a.token_expires_at <= @DueBefore AND (s.lease_until IS NULL OR s.lease_until <= @Now)
  AND (@AfterId::text IS NULL OR (a.token_expires_at, a."id") > (@AfterExpiry, CAST(@AfterId AS uuid)))
ORDER BY a.token_expires_at, a."id"
LIMIT 500;

-- Shopify expiring: no-expiry page
SELECT a."id"::text AS Id, a.shop_domain AS Label, NULL::timestamptz AS ExpiresAt
FROM shopify_stores a
LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
WHERE a.is_active AND a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND (length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$')
  AND a.token_expires_at IS NULL AND (@AfterId::text IS NULL OR a."id" > CAST(@AfterId AS uuid))
ORDER BY a."id"
LIMIT 500;

-- Shopify expiring: find account
SELECT a."id"::text AS Id, a.shop_domain AS Label
FROM shopify_stores a
WHERE a.is_active AND a.refresh_token IS NOT NULL AND a.shop_domain = @Key;

-- Shopify expiring: claim
WITH account AS (
    SELECT a."id"::text AS Id, a.shop_domain AS Label, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
           a.token_expires_at AS AccessExpiresAt, s.xmin AS version, @Holder AS LeaseHolder,
           COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
           s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
           s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt,
           CASE WHEN s.lease_holder IS DISTINCT FROM @Holder THEN s.lease_token_hash END AS LeaseTokenHash,
           CASE WHEN s.lease_until IS NOT NULL AND s.lease_holder IS DISTINCT FROM @Holder THEN s.updated_at END AS LeasedAt,
           a.token_expires_at AS expiry, a."id" AS key
    FROM shopify_stores a
    LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
    WHERE a."id" = ANY(CAST(@Ids AS uuid[])) AND a.is_active AND a.refresh_token IS NOT NULL
      AND (s.account_id IS NULL
           OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
           OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
      AND (length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$')
      AND a.token_expires_at <= @DueBefore AND (s.lease_until IS NULL OR s.lease_until <= @Now)
    ORDER BY a.token_expires_at, a."id"
    LIMIT @Count
    -- For this statement only: the main application, in the middle of writing the row, is left alone.
    FOR UPDATE OF a SKIP LOCKED),
claimed AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
    SELECT 'shopify_refresh', Id, @LeaseUntil, hash, @Holder, @Now FROM account
    ON CONFLICT (platform, account_id) DO UPDATE SET
        lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
        lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
    WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
       OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id)
           AND (s.lease_until IS NULL OR s.lease_until <= @Now)
           AND NOT (s.token_hash IS NOT DISTINCT FROM EXCLUDED.lease_token_hash AND s.unknown_outcome_at IS NOT NULL
                    AND s.unknown_outcome_at > @Now - make_interval(secs => @UnknownOutcomeWait))
           AND (s.token_hash IS DISTINCT FROM EXCLUDED.lease_token_hash OR (NOT s.needs_reauth AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= @Now)))
           AND (s.last_success_at IS NULL OR s.last_success_at < @CycleStart))
    RETURNING s.account_id)
SELECT a.*, a.Id IN (SELECT account_id FROM claimed) AS Claimed FROM account a ORDER BY a.expiry, a.key;

-- Shopify expiring: forced claim
WITH account AS (
    SELECT a."id"::text AS Id, a.shop_domain AS Label, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
           a.token_expires_at AS AccessExpiresAt, s.xmin AS version, @Holder AS LeaseHolder,
           COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
           s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
           s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt,
           CASE WHEN s.lease_holder IS DISTINCT FROM @Holder THEN s.lease_token_hash END AS LeaseTokenHash,
           CASE WHEN s.lease_until IS NOT NULL AND s.lease_holder IS DISTINCT FROM @Holder THEN s.updated_at END AS LeasedAt,
           a.token_expires_at AS expiry, a."id" AS key
    FROM shopify_stores a
    LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
    WHERE a."id" = ANY(CAST(@Ids AS uuid[])) AND a.is_active AND a.refresh_token IS NOT NULL
    -- For this statement only: the main application, in the middle of writing the row, is left alone.
    FOR UPDATE OF a SKIP LOCKED),
claimed AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
    SELECT 'shopify_refresh', Id, @LeaseUntil, hash, @Holder, @Now FROM account
    ON CONFLICT (platform, account_id) DO UPDATE SET
        lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
        lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
    WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
       OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id)
           AND (s.lease_until IS NULL OR s.lease_until <= @Now)
           AND NOT (s.token_hash IS NOT DISTINCT FROM EXCLUDED.lease_token_hash AND s.unknown_outcome_at IS NOT NULL
                    AND s.unknown_outcome_at > @Now - make_interval(secs => @UnknownOutcomeWait)))
    RETURNING s.account_id)
SELECT a.*, a.Id IN (SELECT account_id FROM claimed) AS Claimed FROM account a ORDER BY a.expiry, a.key;

-- Shopify expiring: store
WITH stored AS (
    UPDATE shopify_stores a
    SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = @ExpiresAt, refresh_token_expires_at = @RefreshExpiresAt,
        updated_at = (@Now::timestamptz AT TIME ZONE 'UTC')
    WHERE a."id" = CAST(@Id AS uuid) AND a.refresh_token IN (@Sent, @RefreshToken)
    RETURNING a."id"::text AS id),
state AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, last_success_at, updated_at)
    SELECT 'shopify_refresh', id, @Now, @Now FROM stored
    ON CONFLICT (platform, account_id) DO UPDATE SET
        consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
        token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at,
        lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL),
released AS (
    UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
    WHERE s.platform = 'shopify_refresh' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
SELECT 1 FROM stored;

-- Shopify expiring: save state
INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, last_error, last_error_at,
    next_attempt_at, needs_reauth, token_hash, unknown_outcome_at, last_success_at, updated_at)
SELECT @Platform, @AccountId, @ConsecutiveFailures, @LastError, @LastErrorAt,
    @NextAttemptAt, @NeedsReauth, @TokenHash, @UnknownOutcomeAt, @LastSuccessAt, @Now
WHERE EXISTS (SELECT 1 FROM shopify_stores a WHERE a."id" = CAST(@AccountId AS uuid))
ON CONFLICT (platform, account_id) DO UPDATE SET
    consecutive_failures = EXCLUDED.consecutive_failures, last_error = EXCLUDED.last_error,
    last_error_at = EXCLUDED.last_error_at, next_attempt_at = EXCLUDED.next_attempt_at,
    needs_reauth = EXCLUDED.needs_reauth, token_hash = EXCLUDED.token_hash,
    unknown_outcome_at = EXCLUDED.unknown_outcome_at,
    last_success_at = COALESCE(EXCLUDED.last_success_at, s.last_success_at), updated_at = EXCLUDED.updated_at,
    lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
WHERE s.lease_holder IS NULL OR s.lease_holder = @LeaseHolder;

-- Shopify expiring: needs re-authorisation (metric)
SELECT count(*)
FROM token_refresh_state s JOIN shopify_stores a ON a."id"::text = s.account_id
WHERE s.platform = 'shopify_refresh' AND s.needs_reauth AND a.is_active AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex');

-- Shopify expiring: accounts deleted (PostgreSQL's counts)
SELECT CASE WHEN current_setting('track_counts')::bool
            THEN pg_stat_get_tuples_deleted(c.oid) || '/' || pg_relation_filenode(c.oid) END AS Now,
       (SELECT n.detail FROM token_refresh_notices n WHERE n.notice = @Notice) AS Clean
FROM pg_class c
WHERE c.oid = to_regclass('shopify_stores');

-- Shopify expiring: deleted accounts' state
SELECT s.platform AS Platform, s.account_id AS AccountId
FROM token_refresh_state s
WHERE s.platform = ANY(@Keys)
  AND NOT EXISTS (SELECT 1 FROM shopify_stores a WHERE a."id" = CAST(s.account_id AS uuid))
LIMIT 50000;

-- Shopify expiring: deleted accounts' state removed
DELETE FROM token_refresh_state s
USING unnest(CAST(@Platforms AS text[]), CAST(@Ids AS text[])) AS gone(platform, account_id)
WHERE s.platform = gone.platform AND s.account_id = gone.account_id AND (s.lease_until IS NULL OR s.lease_until <= @Now)
  AND NOT EXISTS (SELECT 1 FROM shopify_stores a WHERE a."id" = CAST(s.account_id AS uuid));

-- Shopify expiring: refresh tokens ending
SELECT a."id"::text AS Id, a.shop_domain AS Label, a.refresh_token_expires_at AS ExpiresAt
FROM shopify_stores a
LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
WHERE a.is_active AND a.refresh_token IS NOT NULL AND a.refresh_token_expires_at <= @WarnBefore
  AND NOT (COALESCE(s.needs_reauth, false) AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
ORDER BY 3
LIMIT 1000;

-- Shopify expiring: daily quota
SELECT (SELECT count(*) FROM shopify_stores a WHERE a.is_active AND a.refresh_token IS NOT NULL) AS Accounts,
       r.quota_per_day AS PerDay, r.remaining_today AS Remaining
FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = 'shopify_refresh';

-- Shopify expiring: daily quota (status)
SELECT (SELECT count(*) FROM shopify_stores a WHERE a.is_active AND a.refresh_token IS NOT NULL),
       r.quota_per_day, r.remaining_today, r.quota_seen_at
FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = 'shopify_refresh';

-- Shopify expiring: status counts
SELECT count(*) FILTER (WHERE due AND callable AND eligible),
       count(*) FILTER (WHERE recent),
       count(*) FILTER (WHERE backing_off),
       count(*) FILTER (WHERE needs_reauth),
       count(*) FILTER (WHERE ending AND NOT needs_reauth),
       count(*) FILTER (WHERE NOT callable),
       count(*) FILTER (WHERE backing_off AND paused)
FROM (
    SELECT a."id"::text AS id, a.shop_domain AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           a.refresh_token_expires_at AS refresh_token_ends,
           a.token_expires_at <= @DueBefore AS due,
           COALESCE((length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$'), false) AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS backing_off,
           COALESCE(a.refresh_token_expires_at <= @WarnBefore, false) AS ending,
           false AS paused
    FROM shopify_stores a LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
    WHERE a.is_active AND a.refresh_token IS NOT NULL
) accounts;

-- Shopify expiring: status accounts
SELECT id AS Id, shop AS Shop,
       CASE WHEN NOT callable THEN 'not_called' WHEN needs_reauth THEN 'needs_reauth' WHEN backing_off THEN 'backing_off'
            ELSE 'refresh_token_expiring' END AS "Group",
       COALESCE(consecutive_failures, 0) AS ConsecutiveFailures, last_error AS LastError, last_error_at AS LastErrorAt,
       next_attempt_at AS NextAttemptAt, refresh_token_ends AS RefreshTokenExpiresAt
FROM (
    SELECT a."id"::text AS id, a.shop_domain AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           a.refresh_token_expires_at AS refresh_token_ends,
           a.token_expires_at <= @DueBefore AS due,
           COALESCE((length(a.shop_domain) <= 77 AND a.shop_domain LIKE '_%.myshopify.com' AND left(a.shop_domain, -14) !~ '[^a-z0-9-]|^-|-$'), false) AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS backing_off,
           COALESCE(a.refresh_token_expires_at <= @WarnBefore, false) AS ending,
           false AS paused
    FROM shopify_stores a LEFT JOIN token_refresh_state s ON s.platform = 'shopify_refresh' AND s.account_id = a."id"::text
    WHERE a.is_active AND a.refresh_token IS NOT NULL
) accounts
WHERE NOT callable OR needs_reauth OR backing_off OR (ending AND NOT needs_reauth)
ORDER BY 3 DESC, last_error_at DESC
LIMIT 500;

-- Shopify migrate-expiring: counts
SELECT count(*) FILTER (WHERE st.is_active AND st.refresh_token IS NULL AND st.access_token IS NOT NULL AND st.access_token <> '') AS Left, count(*) FILTER (WHERE st.is_active AND st.refresh_token IS NOT NULL) AS Expiring
FROM shopify_stores st;

-- Shopify migrate-expiring: candidates
SELECT st."id"::text AS Id, st.shop_domain AS ShopDomain, (s.account_id IS NOT NULL) AS Pending
FROM shopify_stores st
LEFT JOIN token_refresh_state s ON s.platform = 'shopify_exchange' AND s.account_id = st."id"::text
    AND s.token_hash = encode(sha256(convert_to(st.access_token, 'UTF8')), 'hex')
WHERE st.is_active AND st.refresh_token IS NULL AND st.access_token IS NOT NULL AND st.access_token <> '' AND (@ShopDomain::text IS NULL OR st.shop_domain = @ShopDomain) AND (@AfterId::text IS NULL OR st."id" > CAST(@AfterId AS uuid))
ORDER BY st."id"
LIMIT 500;

-- Shopify migrate-expiring: claim
WITH store AS (
    SELECT st."id"::text AS id, st.access_token AS Token, encode(sha256(convert_to(st.access_token, 'UTF8')), 'hex') AS hash, s.xmin AS version
    FROM shopify_stores st
    LEFT JOIN token_refresh_state s ON s.platform = 'shopify_exchange' AND s.account_id = st."id"::text
    WHERE st."id" = CAST(@Id AS uuid) AND st.is_active AND st.refresh_token IS NULL AND st.access_token IS NOT NULL AND st.access_token <> ''),
marked AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, last_error, last_error_at, token_hash, unknown_outcome_at,
        lease_until, lease_token_hash, lease_holder, updated_at)
    SELECT 'shopify_exchange', id, 'token_exchange_sent', @Now, hash, @Now, @LeaseUntil, hash, @Holder, @Now FROM store
    ON CONFLICT (platform, account_id) DO UPDATE SET
        last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at, token_hash = EXCLUDED.token_hash,
        unknown_outcome_at = EXCLUDED.unknown_outcome_at, lease_until = EXCLUDED.lease_until,
        lease_token_hash = EXCLUDED.lease_token_hash, lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
    WHERE s.xmin = (SELECT version FROM store) AND (s.lease_until IS NULL OR s.lease_until <= @Now)
    RETURNING 1)
SELECT Token FROM store WHERE EXISTS (SELECT 1 FROM marked);

-- Shopify migrate-expiring: why not claimed
SELECT (st.refresh_token IS NOT NULL) AS Expiring,
       (SELECT s.lease_until FROM token_refresh_state s
        WHERE s.platform = 'shopify_exchange' AND s.account_id = st."id"::text AND s.lease_until > @Now) AS LeasedUntil
FROM shopify_stores st WHERE st."id" = CAST(@Id AS uuid) AND st.is_active;

-- Shopify migrate-expiring: store
WITH stored AS (
    UPDATE shopify_stores st
    SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = @ExpiresAt,
        refresh_token_expires_at = @RefreshExpiresAt, updated_at = (@Now::timestamptz AT TIME ZONE 'UTC')
    WHERE st."id" = CAST(@Id AS uuid) AND ((st.access_token = @Old AND st.refresh_token IS NULL) OR st.refresh_token = @RefreshToken)
    RETURNING st."id"::text AS id),
cleared AS (
    DELETE FROM token_refresh_state WHERE platform IN ('shopify_exchange', 'shopify') AND account_id IN (SELECT id FROM stored)),
released AS (
    UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
    WHERE s.platform = 'shopify_exchange' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
SELECT 1 FROM stored;

-- Shopify migrate-expiring: unmark
DELETE FROM token_refresh_state WHERE platform = 'shopify_exchange' AND account_id = @Id AND lease_holder = @Holder;

-- eBay: count due
SELECT count(*)::int
FROM ebay_users a
LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND (a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') OR a.token_expires_at IS NULL);

-- eBay: due page
SELECT a."user_id"::text AS Id, NULL AS Label, (a.token_expires_at AT TIME ZONE 'UTC') AS ExpiresAt
FROM ebay_users a
LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AND (s.lease_until IS NULL OR s.lease_until <= @Now)
  AND (@AfterId::text IS NULL OR (a.token_expires_at, a."user_id") > ((@AfterExpiry::timestamptz AT TIME ZONE 'UTC'), CAST(@AfterId AS uuid)))
ORDER BY a.token_expires_at, a."user_id"
LIMIT 500;

-- eBay: no-expiry page
SELECT a."user_id"::text AS Id, NULL AS Label, NULL::timestamptz AS ExpiresAt
FROM ebay_users a
LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL
  AND (s.account_id IS NULL
       OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
       OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
  AND a.token_expires_at IS NULL AND (@AfterId::text IS NULL OR a."user_id" > CAST(@AfterId AS uuid))
ORDER BY a."user_id"
LIMIT 500;

-- eBay: find account
SELECT a."user_id"::text AS Id, NULL AS Label
FROM ebay_users a
WHERE a.refresh_token IS NOT NULL AND a."user_id"::text = @Key;

-- eBay: claim
WITH account AS (
    SELECT a."user_id"::text AS Id, NULL AS Label, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
           (a.token_expires_at AT TIME ZONE 'UTC') AS AccessExpiresAt, s.xmin AS version, @Holder AS LeaseHolder,
           COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
           s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
           s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt,
           CASE WHEN s.lease_holder IS DISTINCT FROM @Holder THEN s.lease_token_hash END AS LeaseTokenHash,
           CASE WHEN s.lease_until IS NOT NULL AND s.lease_holder IS DISTINCT FROM @Holder THEN s.updated_at END AS LeasedAt,
           a.token_expires_at AS expiry, a."user_id" AS key
    FROM ebay_users a
    LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
    WHERE a."user_id" = ANY(CAST(@Ids AS uuid[])) AND a.refresh_token IS NOT NULL
      AND (s.account_id IS NULL
           OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
           OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
      AND a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AND (s.lease_until IS NULL OR s.lease_until <= @Now)
    ORDER BY a.token_expires_at, a."user_id"
    LIMIT @Count
    -- For this statement only: the main application, in the middle of writing the row, is left alone.
    FOR UPDATE OF a SKIP LOCKED),
claimed AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
    SELECT 'ebay', Id, @LeaseUntil, hash, @Holder, @Now FROM account
    ON CONFLICT (platform, account_id) DO UPDATE SET
        lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
        lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
    WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
       OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id)
           AND (s.lease_until IS NULL OR s.lease_until <= @Now)
           AND NOT (s.token_hash IS NOT DISTINCT FROM EXCLUDED.lease_token_hash AND s.unknown_outcome_at IS NOT NULL
                    AND s.unknown_outcome_at > @Now - make_interval(secs => @UnknownOutcomeWait))
           AND (s.token_hash IS DISTINCT FROM EXCLUDED.lease_token_hash OR (NOT s.needs_reauth AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= @Now)))
           AND (s.last_success_at IS NULL OR s.last_success_at < @CycleStart))
    RETURNING s.account_id)
SELECT a.*, a.Id IN (SELECT account_id FROM claimed) AS Claimed FROM account a ORDER BY a.expiry, a.key;

-- eBay: forced claim
WITH account AS (
    SELECT a."user_id"::text AS Id, NULL AS Label, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
           (a.token_expires_at AT TIME ZONE 'UTC') AS AccessExpiresAt, s.xmin AS version, @Holder AS LeaseHolder,
           COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
           s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
           s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt,
           CASE WHEN s.lease_holder IS DISTINCT FROM @Holder THEN s.lease_token_hash END AS LeaseTokenHash,
           CASE WHEN s.lease_until IS NOT NULL AND s.lease_holder IS DISTINCT FROM @Holder THEN s.updated_at END AS LeasedAt,
           a.token_expires_at AS expiry, a."user_id" AS key
    FROM ebay_users a
    LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
    WHERE a."user_id" = ANY(CAST(@Ids AS uuid[])) AND a.refresh_token IS NOT NULL
    -- For this statement only: the main application, in the middle of writing the row, is left alone.
    FOR UPDATE OF a SKIP LOCKED),
claimed AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
    SELECT 'ebay', Id, @LeaseUntil, hash, @Holder, @Now FROM account
    ON CONFLICT (platform, account_id) DO UPDATE SET
        lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
        lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
    WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
       OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id)
           AND (s.lease_until IS NULL OR s.lease_until <= @Now)
           AND NOT (s.token_hash IS NOT DISTINCT FROM EXCLUDED.lease_token_hash AND s.unknown_outcome_at IS NOT NULL
                    AND s.unknown_outcome_at > @Now - make_interval(secs => @UnknownOutcomeWait)))
    RETURNING s.account_id)
SELECT a.*, a.Id IN (SELECT account_id FROM claimed) AS Claimed FROM account a ORDER BY a.expiry, a.key;

-- eBay: store
WITH stored AS (
    UPDATE ebay_users a
    SET access_token = @AccessToken, token_expires_at = (@ExpiresAt::timestamptz AT TIME ZONE 'UTC'),
        updated_at = (@Now::timestamptz AT TIME ZONE 'UTC')
    WHERE a."user_id" = CAST(@Id AS uuid) AND a.refresh_token = @Sent
    RETURNING a."user_id"::text AS id),
state AS (
    INSERT INTO token_refresh_state AS s (platform, account_id, last_success_at, updated_at)
    SELECT 'ebay', id, @Now, @Now FROM stored
    ON CONFLICT (platform, account_id) DO UPDATE SET
        consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
        token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at,
        lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL),
released AS (
    UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
    WHERE s.platform = 'ebay' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
SELECT 1 FROM stored;

-- eBay: save state
INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, last_error, last_error_at,
    next_attempt_at, needs_reauth, token_hash, unknown_outcome_at, last_success_at, updated_at)
SELECT @Platform, @AccountId, @ConsecutiveFailures, @LastError, @LastErrorAt,
    @NextAttemptAt, @NeedsReauth, @TokenHash, @UnknownOutcomeAt, @LastSuccessAt, @Now
WHERE EXISTS (SELECT 1 FROM ebay_users a WHERE a."user_id" = CAST(@AccountId AS uuid))
ON CONFLICT (platform, account_id) DO UPDATE SET
    consecutive_failures = EXCLUDED.consecutive_failures, last_error = EXCLUDED.last_error,
    last_error_at = EXCLUDED.last_error_at, next_attempt_at = EXCLUDED.next_attempt_at,
    needs_reauth = EXCLUDED.needs_reauth, token_hash = EXCLUDED.token_hash,
    unknown_outcome_at = EXCLUDED.unknown_outcome_at,
    last_success_at = COALESCE(EXCLUDED.last_success_at, s.last_success_at), updated_at = EXCLUDED.updated_at,
    lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
WHERE s.lease_holder IS NULL OR s.lease_holder = @LeaseHolder;

-- eBay: needs re-authorisation (metric)
SELECT count(*)
FROM token_refresh_state s JOIN ebay_users a ON a."user_id"::text = s.account_id
WHERE s.platform = 'ebay' AND s.needs_reauth AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex');

-- eBay: accounts deleted (PostgreSQL's counts)
SELECT CASE WHEN current_setting('track_counts')::bool
            THEN pg_stat_get_tuples_deleted(c.oid) || '/' || pg_relation_filenode(c.oid) END AS Now,
       (SELECT n.detail FROM token_refresh_notices n WHERE n.notice = @Notice) AS Clean
FROM pg_class c
WHERE c.oid = to_regclass('ebay_users');

-- eBay: deleted accounts' state
SELECT s.platform AS Platform, s.account_id AS AccountId
FROM token_refresh_state s
WHERE s.platform = ANY(@Keys)
  AND NOT EXISTS (SELECT 1 FROM ebay_users a WHERE a."user_id" = CAST(s.account_id AS uuid))
LIMIT 50000;

-- eBay: deleted accounts' state removed
DELETE FROM token_refresh_state s
USING unnest(CAST(@Platforms AS text[]), CAST(@Ids AS text[])) AS gone(platform, account_id)
WHERE s.platform = gone.platform AND s.account_id = gone.account_id AND (s.lease_until IS NULL OR s.lease_until <= @Now)
  AND NOT EXISTS (SELECT 1 FROM ebay_users a WHERE a."user_id" = CAST(s.account_id AS uuid));

-- eBay: refresh tokens ending
SELECT a."user_id"::text AS Id, NULL AS Label, (a.refresh_token_expires_at AT TIME ZONE 'UTC') AS ExpiresAt
FROM ebay_users a
LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
WHERE a.refresh_token IS NOT NULL AND a.refresh_token_expires_at <= (@WarnBefore::timestamptz AT TIME ZONE 'UTC')
  AND NOT (COALESCE(s.needs_reauth, false) AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
ORDER BY 3
LIMIT 1000;

-- eBay: daily quota
SELECT (SELECT count(*) FROM ebay_users a WHERE a.refresh_token IS NOT NULL) AS Accounts,
       r.quota_per_day AS PerDay, r.remaining_today AS Remaining
FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = 'ebay';

-- eBay: daily quota (status)
SELECT (SELECT count(*) FROM ebay_users a WHERE a.refresh_token IS NOT NULL),
       r.quota_per_day, r.remaining_today, r.quota_seen_at
FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = 'ebay';

-- eBay: announce ending refresh tokens
WITH ending AS (
    SELECT a."user_id"::text AS id, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash
    FROM ebay_users a
    LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
    WHERE a.refresh_token IS NOT NULL AND a.refresh_token_expires_at <= (@AnnounceBefore::timestamptz AT TIME ZONE 'UTC')
      AND NOT (COALESCE(s.needs_reauth, false) AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))),
announced AS (
    INSERT INTO token_refresh_state AS e (platform, account_id, needs_reauth, last_error, last_error_at, token_hash, updated_at)
    SELECT 'ebay:ending', id, true, 'refresh_token_ending', @Now, hash, @Now FROM ending
    ON CONFLICT (platform, account_id) DO UPDATE SET
        last_error_at = EXCLUDED.last_error_at, token_hash = EXCLUDED.token_hash, updated_at = EXCLUDED.updated_at
    WHERE e.token_hash IS DISTINCT FROM EXCLUDED.token_hash
    RETURNING e.account_id),
withdrawn AS (
    DELETE FROM token_refresh_state e
    WHERE e.platform = 'ebay:ending' AND e.account_id NOT IN (SELECT id FROM ending))
SELECT announced.account_id AS Id, NULL AS Label
FROM announced JOIN ebay_users a ON a."user_id"::text = announced.account_id;

-- eBay: status counts
SELECT count(*) FILTER (WHERE due AND callable AND eligible),
       count(*) FILTER (WHERE recent),
       count(*) FILTER (WHERE backing_off),
       count(*) FILTER (WHERE needs_reauth),
       count(*) FILTER (WHERE ending AND NOT needs_reauth),
       count(*) FILTER (WHERE NOT callable),
       count(*) FILTER (WHERE backing_off AND paused)
FROM (
    SELECT a."user_id"::text AS id, NULL AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           (a.refresh_token_expires_at AT TIME ZONE 'UTC') AS refresh_token_ends,
           a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AS due,
           true AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS backing_off,
           COALESCE((a.refresh_token_expires_at AT TIME ZONE 'UTC') <= @WarnBefore, false) AS ending,
           false AS paused
    FROM ebay_users a LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
    WHERE a.refresh_token IS NOT NULL
) accounts;

-- eBay: status accounts
SELECT id AS Id, shop AS Shop,
       CASE WHEN NOT callable THEN 'not_called' WHEN needs_reauth THEN 'needs_reauth' WHEN backing_off THEN 'backing_off'
            ELSE 'refresh_token_expiring' END AS "Group",
       COALESCE(consecutive_failures, 0) AS ConsecutiveFailures, last_error AS LastError, last_error_at AS LastErrorAt,
       next_attempt_at AS NextAttemptAt, refresh_token_ends AS RefreshTokenExpiresAt
FROM (
    SELECT a."user_id"::text AS id, NULL AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
           (a.refresh_token_expires_at AT TIME ZONE 'UTC') AS refresh_token_ends,
           a.token_expires_at <= (@DueBefore::timestamptz AT TIME ZONE 'UTC') AS due,
           true AS callable,
           (s.account_id IS NULL
            OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
            OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')) AS eligible,
           COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
           (COALESCE(s.needs_reauth, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS needs_reauth,
           (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE(s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'), false)) AS backing_off,
           COALESCE((a.refresh_token_expires_at AT TIME ZONE 'UTC') <= @WarnBefore, false) AS ending,
           false AS paused
    FROM ebay_users a LEFT JOIN token_refresh_state s ON s.platform = 'ebay' AND s.account_id = a."user_id"::text
    WHERE a.refresh_token IS NOT NULL
) accounts
WHERE NOT callable OR needs_reauth OR backing_off OR (ending AND NOT needs_reauth)
ORDER BY 3 DESC, last_error_at DESC
LIMIT 500;
