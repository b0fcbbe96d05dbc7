using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>Every statement of Shopify's validation for shopify_stores as it is now, each built once into one string.</summary>
internal sealed class ShopifyValidationStatements
{
    /// <summary>The state key of a token exchange whose answer may have been lost (see <see cref="ShopifyTokenExchange"/>).</summary>
    public const string ExchangeStateKey = "shopify_exchange";

    /// <summary>The channel on which flagged accounts and switched-off stores are announced (docs/reauth.md).</summary>
    public const string ReauthChannel = "tokenrefresh_reauth";

    public ShopifyValidationStatements(string stateKey, TableShape shape)
    {
        var from = $"""
            FROM {ShopifySchema.Table} st
            LEFT JOIN token_refresh_state s ON s.platform = '{stateKey}' AND s.account_id = {shape.Id("st")}
            """;
        // Which stores are validated: active, with a non-expiring token (stores with an expiring token are refreshed
        // instead, ShopifyExpiring: the refresh proves the token), at a domain that may be called.
        var nonExpiring = ShopifySchema.HasExpiringTokens(shape) ? " AND st.refresh_token IS NULL" : "";
        var validated = $"st.is_active{nonExpiring}";
        string StoreOf(string stateId) => $"{ShopifySchema.Table} st ON {shape.Key("st")} = {shape.IdParam(stateId)}";

        // Each cycle, one pass over the stores and their state: a store with no next check yet (new, switched on again,
        // or left out while it could not be validated) gets one, at its boundary of the interval when its last check
        // passed (else now); so does one whose next check is further off than the interval (the interval was shortened;
        // a page's lease, and a minute for the replicas' clocks, are never taken for that), and a failing store given a
        // new token, due now. In key order, so that two replicas' passes never deadlock.
        var unscheduled = $"""
            FROM {ShopifySchema.Table} st
            LEFT JOIN token_refresh_state s ON s.platform = '{stateKey}' AND s.account_id = {shape.Id("st")}
            WHERE {validated}
              AND (s.account_id IS NULL OR s.next_check_at IS NULL
                   OR (s.token_hash IS NULL AND s.next_check_at > @Now + make_interval(secs => greatest(@IntervalSeconds, @LeaseSeconds) + 60))
                   OR (s.token_hash IS NOT NULL AND s.next_check_at > @Now
                       AND s.token_hash IS DISTINCT FROM encode(sha256(convert_to(COALESCE(st.access_token, ''), 'UTF8')), 'hex')))
            """;
        var nextCheck = $"CASE WHEN s.token_hash IS NULL AND s.last_success_at IS NOT NULL THEN {NextCheckSql("s.last_success_at", shape.Id("st"))} ELSE @Now END";

        // The pass finds them, up to @Most (a query, which PostgreSQL shares among its workers), and they are given their next
        // check by key unless another replica's pass or page changed it meanwhile. A first start's many are given theirs in
        // one statement instead (Schedule).
        ScheduleFind = $"""
            SELECT {shape.Id("st")} AS Id, {nextCheck} AS At, s.next_check_at AS Was
            {unscheduled}
            LIMIT @Most
            """;

        ScheduleSet = $"""
            WITH v AS (
                SELECT * FROM unnest(CAST(@Ids AS text[]), CAST(@Ats AS timestamptz[]), CAST(@Wases AS timestamptz[])) AS v(id, at, was)),
            added AS (
                INSERT INTO token_refresh_state (platform, account_id, next_check_at, updated_at)
                SELECT '{stateKey}', v.id, v.at, @Now FROM v WHERE v.was IS NULL ORDER BY v.id
                ON CONFLICT (platform, account_id) DO NOTHING)
            UPDATE token_refresh_state s SET next_check_at = v.at
            FROM v
            WHERE s.platform = '{stateKey}' AND s.account_id = v.id AND s.next_check_at IS NOT DISTINCT FROM v.was
            """;

        Schedule = $"""
            INSERT INTO token_refresh_state AS s (platform, account_id, next_check_at, updated_at)
            SELECT '{stateKey}', {shape.Id("st")}, {nextCheck}, @Now
            {unscheduled}
            ORDER BY 2
            ON CONFLICT (platform, account_id) DO UPDATE SET next_check_at = EXCLUDED.next_check_at
            """;

        // The schedule alone (an index range): a store that can no longer be validated is counted until a page sets it aside.
        CountDue = $"""
            SELECT count(*)::int
            FROM token_refresh_state s
            WHERE s.platform = '{stateKey}' AND s.next_check_at <= @Now
            """;

        // The due stores, soonest first, a page at a time: each page moves their next check a lease ahead, so that
        // another replica's page skips them and a process that dies leaves them due again when the lease ends. A store
        // that is not to be validated (switched off, deleted, given an expiring token) is left unscheduled; one whose
        // domain may not be called is looked at again an interval later. The token and state come with the page.
        ClaimPage = $"""
            WITH page AS (
                SELECT s.account_id
                FROM token_refresh_state s
                WHERE s.platform = '{stateKey}' AND s.next_check_at <= @Now
                ORDER BY s.next_check_at, s.account_id
                LIMIT {Paging.PageSize}
                FOR UPDATE SKIP LOCKED)
            UPDATE token_refresh_state s
            SET next_check_at = CASE WHEN {shape.Key("st")} IS NULL OR NOT ({validated}) THEN NULL
                                     WHEN NOT {ShopDomain.Sql("st.shop_domain")} THEN @Now + make_interval(secs => greatest(@IntervalSeconds, @LeaseSeconds))
                                     ELSE @Now + make_interval(secs => @LeaseSeconds) END
            FROM page
            LEFT JOIN {StoreOf("page.account_id")}
            WHERE s.platform = '{stateKey}' AND s.account_id = page.account_id
            RETURNING s.account_id AS Id, st.shop_domain AS ShopDomain, COALESCE(st.access_token, '') AS Token,
                      COALESCE({validated} AND {ShopDomain.Sql("st.shop_domain")}, false) AS Claimed,
                      {AccountState.Columns.Nested(11)}
            """;

        // A few stores whose last check passed, not among the cycle's rejections: those whose next check is furthest off
        // (by the schedule's index), most of them checked last. The incident guard asks Shopify about them again.
        Controls = $"""
            SELECT st.shop_domain AS ShopDomain, st.access_token AS Token
            FROM token_refresh_state s
            JOIN {StoreOf("s.account_id")}
            WHERE s.platform = '{stateKey}' AND s.next_check_at IS NOT NULL AND s.token_hash IS NULL AND s.last_success_at IS NOT NULL
              AND NOT s.account_id = ANY (CAST(@Rejected AS text[]))
              AND {validated} AND {ShopDomain.Sql("st.shop_domain")} AND st.access_token <> ''
            ORDER BY s.next_check_at DESC, s.account_id DESC
            LIMIT @Most
            """;

        FindAccount = $"""
            SELECT {shape.Id("st")} AS Id, st.shop_domain AS ShopDomain
            FROM {ShopifySchema.Table} st
            WHERE st.shop_domain = @Key AND st.is_active{nonExpiring}
            """;

        ReadOne = $"""
            SELECT st.access_token AS Token,
                   {AccountState.Columns.Nested(7)}
            {from}
            WHERE {shape.Key("st")} = {shape.IdParam("@Id")} AND st.is_active{nonExpiring}
            """;

        // Only the token that was rejected: if the main application stored a new one meanwhile, the store stays active.
        // Nor while a token exchange of that token may have succeeded unanswered: the exchange revoked it, and running
        // migrate-expiring again recovers the pair.
        Deactivate = $"""
            WITH pending AS (
                SELECT 1 FROM token_refresh_state m
                WHERE m.platform = '{ExchangeStateKey}' AND m.account_id = @Id AND m.token_hash = @Hash
                  AND m.unknown_outcome_at > @Now - interval '7 days'),
            deactivated AS (
                UPDATE {ShopifySchema.Table} st
                SET is_active = false, updated_at = {shape.At("updated_at", "@Now")}
                WHERE {shape.Key("st")} = {shape.IdParam("@Id")} AND st.is_active AND st.access_token = @RejectedToken AND NOT EXISTS (SELECT 1 FROM pending)
                RETURNING {shape.Id("st")} AS id),
            cleared AS (
                DELETE FROM token_refresh_state WHERE platform = '{stateKey}' AND account_id IN (SELECT id FROM deactivated)),
            notified AS (
                SELECT pg_notify('{ReauthChannel}', json_build_object('event', 'deactivated', 'platform', '{stateKey}',
                    'account_id', id::text, 'shop_domain', @Shop, 'reason', @Reason, 'at', @Now)::text) FROM deactivated)
            -- Counted through the notification (one per store switched off), so that it is sent: a CTE nobody reads does not run.
            SELECT (SELECT count(*) FROM notified) AS Deactivated, EXISTS (SELECT 1 FROM pending) AS ExchangePending
            """;

        SaveState = AccountState.SaveSql(ShopifySchema.Table, shape, nextCheck: "@NextAttemptAt");

        // Its own state rows and the token exchanges' markers.
        Leftovers = new Leftovers(ShopifySchema.Table, shape, [stateKey, ExchangeStateKey]);

        // The state each validated store gets is AccountState.Succeeded, in key order, so that two replicas' batches never deadlock.
        SaveValidated = $"""
            INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, needs_reauth, last_success_at, next_check_at, updated_at)
            SELECT '{stateKey}', v.id, 0, false, v.at, {NextCheckSql("v.at", "v.id")}, v.at
            FROM unnest(CAST(@Ids AS text[]), CAST(@Ats AS timestamptz[])) AS v(id, at)
            ORDER BY v.id
            ON CONFLICT (platform, account_id) DO UPDATE SET
                consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
                token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at,
                next_check_at = EXCLUDED.next_check_at, updated_at = EXCLUDED.updated_at
            """;
    }

    /// <summary>The stores that have no next check, or the wrong one, up to @Most (parameters @Now, @IntervalSeconds, @LeaseSeconds).</summary>
    public string ScheduleFind { get; }

    /// <summary>Gives those found their next check (@Ids, @Ats, @Wases: what it was when found; @Now).</summary>
    public string ScheduleSet { get; }

    /// <summary>Gives every store that has none, or the wrong one, its next check, in one statement (parameters as <see cref="ScheduleFind"/>).</summary>
    public string Schedule { get; }

    /// <summary>The stores due (parameter @Now).</summary>
    public string CountDue { get; }

    /// <summary>Takes the next page of due stores, with their token and state (parameters @Now, @IntervalSeconds, @LeaseSeconds).</summary>
    public string ClaimPage { get; }

    /// <summary>Up to @Most stores whose last check passed, other than @Rejected (ids).</summary>
    public string Controls { get; }

    /// <summary>The active stores with shop_domain @Key (an operator's `refresh --shop`).</summary>
    public string FindAccount { get; }

    /// <summary>One store's token and state (@Id).</summary>
    public string ReadOne { get; }

    /// <summary>Switches store @Id off if it still holds @RejectedToken, and announces it.</summary>
    public string Deactivate { get; }

    /// <summary>Records a batch of successful validations and their next checks (@Ids, @Ats, @IntervalSeconds).</summary>
    public string SaveValidated { get; }

    /// <summary>Writes a store's state after a failure, while the store is in the table (<see cref="AccountState.SaveSql"/>).</summary>
    public string SaveState { get; }

    /// <summary>The state of stores deleted from the table, removed a batch a cycle.</summary>
    public Leftovers Leftovers { get; }

    /// <summary>
    /// SHOPIFY_VALIDATE_INTERVAL_MINUTES (parameter @IntervalSeconds): when a store whose check passed at
    /// <paramref name="at"/> is due again. Each store crosses its own boundaries of the interval, spread over it by a hash
    /// of its id (<paramref name="id"/>, as text), so that an equal share of the stores comes due in every cycle; the
    /// first after <paramref name="at"/> is its next check. With an interval of 0, the next cycle.
    /// </summary>
    public static string NextCheckSql(string at, string id) => $"""
        CASE WHEN @IntervalSeconds = 0 THEN {at}
             ELSE to_timestamp((floor((extract(epoch FROM {at}) - abs(hashtext({id})::bigint) % @IntervalSeconds) / @IntervalSeconds) + 1)
                               * @IntervalSeconds + abs(hashtext({id})::bigint) % @IntervalSeconds) END
        """;

    /// <summary>Whether a store joined to its state as <c>s</c> is due (@Now): its next check has come, or it has none yet.</summary>
    public const string DueSql = "(s.account_id IS NULL OR s.next_check_at IS NULL OR s.next_check_at <= @Now)";
}
