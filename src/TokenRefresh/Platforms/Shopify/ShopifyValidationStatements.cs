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
        // Stores with an expiring token are refreshed instead (ShopifyExpiring): the refresh proves the token.
        var nonExpiring = ShopifySchema.HasExpiringTokens(shape) ? " AND st.refresh_token IS NULL" : "";
        var due = $"""
            st.is_active{nonExpiring}
              AND {ShopDomain.Sql("st.shop_domain").Nested(6)}
              AND {AccountState.EligibleSql("COALESCE(st.access_token, '')").Nested(6)}
              AND {IntervalSql(shape.Key("st")).Nested(6)}
            """;

        CountDue = $"""
            SELECT count(*)::int
            {from}
            WHERE {due}
            """;

        // The token and state come with the page: validation needs no claim, so a store costs one round trip (its state).
        DuePage = $"""
            SELECT {shape.Id("st")} AS Id, st.shop_domain AS ShopDomain, COALESCE(st.access_token, '') AS Token,
                   {AccountState.Columns.Nested(7)}
            {from}
            WHERE {due}
              AND {shape.After("st", "@AfterId")}
            ORDER BY {shape.Key("st")}
            LIMIT {Paging.PageSize}
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

        SaveState = AccountState.SaveSql(ShopifySchema.Table, shape);

        // Its own state rows and the token exchanges' markers.
        Leftovers = new Leftovers(ShopifySchema.Table, shape, [stateKey, ExchangeStateKey]);

        // The state each validated store gets is AccountState.Succeeded, in key order, so that two replicas' batches never deadlock.
        SaveValidated = $"""
            INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, needs_reauth, last_success_at, updated_at)
            SELECT '{stateKey}', v.id, 0, false, v.at, v.at
            FROM unnest(CAST(@Ids AS text[]), CAST(@Ats AS timestamptz[])) AS v(id, at)
            ORDER BY v.id
            ON CONFLICT (platform, account_id) DO UPDATE SET
                consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
                token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at
            """;
    }

    /// <summary>The stores due (parameters @Now, @IntervalSeconds).</summary>
    public string CountDue { get; }

    /// <summary>A page of due stores, with their token and state, after @AfterId.</summary>
    public string DuePage { get; }

    /// <summary>The active stores with shop_domain @Key (an operator's `refresh --shop`).</summary>
    public string FindAccount { get; }

    /// <summary>One store's token and state (@Id).</summary>
    public string ReadOne { get; }

    /// <summary>Switches store @Id off if it still holds @RejectedToken, and announces it.</summary>
    public string Deactivate { get; }

    /// <summary>Records a batch of successful validations (@Ids, @Ats).</summary>
    public string SaveValidated { get; }

    /// <summary>Writes a store's state after a failure, while the store is in the table (<see cref="AccountState.SaveSql"/>).</summary>
    public string SaveState { get; }

    /// <summary>The state of stores deleted from the table, removed a batch a cycle.</summary>
    public Leftovers Leftovers { get; }

    /// <summary>
    /// SHOPIFY_VALIDATE_INTERVAL_MINUTES, on a store whose key is <paramref name="storeId"/>, joined to its state as
    /// <c>s</c> (parameters @Now, @IntervalSeconds): a store whose last check succeeded is due again when it crosses its
    /// own boundary of the interval; the boundaries are spread over the interval by a hash of the store's id, so an equal
    /// share of the stores comes due in every cycle. A failing store follows its backoff instead.
    /// </summary>
    public static string IntervalSql(string storeId) => $"""
        (@IntervalSeconds = 0 OR s.account_id IS NULL OR s.last_error_at IS NOT NULL OR s.last_success_at IS NULL
         OR floor((extract(epoch FROM @Now::timestamptz) - (abs(hashtext({storeId}::text)::bigint) % @IntervalSeconds)) / @IntervalSeconds)
            > floor((extract(epoch FROM s.last_success_at) - (abs(hashtext({storeId}::text)::bigint) % @IntervalSeconds)) / @IntervalSeconds))
        """;
}
