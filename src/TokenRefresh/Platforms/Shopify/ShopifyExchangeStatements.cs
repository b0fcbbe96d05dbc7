using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>The statements of the move to expiring tokens (<see cref="ShopifyTokenExchange"/>) for shopify_stores as it is now, each built once.</summary>
internal sealed class ShopifyExchangeStatements
{
    /// <summary>The marker (and claim) of an exchange that may have been sent: its own key in token_refresh_state.</summary>
    private const string Marker = ShopifyValidationStatements.ExchangeStateKey;

    /// <summary>An active store that still holds a non-expiring token (SQL on <c>st</c>).</summary>
    private const string Candidate = "st.is_active AND st.refresh_token IS NULL AND st.access_token IS NOT NULL AND st.access_token <> ''";

    /// <param name="validation">The validation's state key: its state about the old token goes with it.</param>
    public ShopifyExchangeStatements(TableShape shape, string validation)
    {
        Counts = $"""
            SELECT count(*) FILTER (WHERE {Candidate}) AS Left, count(*) FILTER (WHERE st.is_active AND st.refresh_token IS NOT NULL) AS Expiring
            FROM shopify_stores st
            """;
        Candidates = $"""
            SELECT {shape.Id("st")} AS Id, st.shop_domain AS ShopDomain, (s.account_id IS NOT NULL) AS Pending
            FROM shopify_stores st
            LEFT JOIN token_refresh_state s ON s.platform = '{Marker}' AND s.account_id = {shape.Id("st")}
                AND s.token_hash = encode(sha256(convert_to(st.access_token, 'UTF8')), 'hex')
            WHERE {Candidate} AND (@ShopDomain::text IS NULL OR st.shop_domain = @ShopDomain) AND {shape.After("st", "@AfterId")}
            ORDER BY {shape.Key("st")}
            LIMIT {Paging.PageSize}
            """;
        Claim = $"""
            WITH store AS (
                SELECT {shape.Id("st")} AS id, st.access_token AS Token, encode(sha256(convert_to(st.access_token, 'UTF8')), 'hex') AS hash, s.xmin AS version
                FROM shopify_stores st
                LEFT JOIN token_refresh_state s ON s.platform = '{Marker}' AND s.account_id = {shape.Id("st")}
                WHERE {shape.Key("st")} = {shape.IdParam("@Id")} AND {Candidate}),
            marked AS (
                INSERT INTO token_refresh_state AS s (platform, account_id, last_error, last_error_at, token_hash, unknown_outcome_at,
                    lease_until, lease_token_hash, lease_holder, updated_at)
                SELECT '{Marker}', id, 'token_exchange_sent', @Now, hash, @Now, @LeaseUntil, hash, @Holder, @Now FROM store
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at, token_hash = EXCLUDED.token_hash,
                    unknown_outcome_at = EXCLUDED.unknown_outcome_at, lease_until = EXCLUDED.lease_until,
                    lease_token_hash = EXCLUDED.lease_token_hash, lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
                WHERE s.xmin = (SELECT version FROM store) AND (s.lease_until IS NULL OR s.lease_until <= @Now)
                RETURNING 1)
            SELECT Token FROM store WHERE EXISTS (SELECT 1 FROM marked)
            """;
        WhyNotClaimed = $"""
            SELECT (st.refresh_token IS NOT NULL) AS Expiring,
                   (SELECT s.lease_until FROM token_refresh_state s
                    WHERE s.platform = '{Marker}' AND s.account_id = {shape.Id("st")} AND s.lease_until > @Now) AS LeasedUntil
            FROM shopify_stores st WHERE {shape.Key("st")} = {shape.IdParam("@Id")} AND st.is_active
            """;
        Store = $"""
            WITH stored AS (
                UPDATE shopify_stores st
                SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = {shape.At("token_expires_at", "@ExpiresAt")},
                    refresh_token_expires_at = {shape.At("refresh_token_expires_at", "@RefreshExpiresAt")}, updated_at = {shape.At("updated_at", "@Now")}
                WHERE {shape.Key("st")} = {shape.IdParam("@Id")} AND ((st.access_token = @Old AND st.refresh_token IS NULL) OR st.refresh_token = @RefreshToken)
                RETURNING {shape.Id("st")} AS id),
            cleared AS (
                DELETE FROM token_refresh_state WHERE platform IN ('{Marker}', '{validation}') AND account_id IN (SELECT id FROM stored)),
            released AS (
                UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
                WHERE s.platform = '{Marker}' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
            SELECT 1 FROM stored
            """;
        Unmark = $"DELETE FROM token_refresh_state WHERE platform = '{Marker}' AND account_id = @Id AND lease_holder = @Holder";
    }

    /// <summary>How many stores are left to migrate, and how many hold an expiring token already.</summary>
    public string Counts { get; }

    /// <summary>A page of the stores left to migrate (one by @ShopDomain, or all), after @AfterId.</summary>
    public string Candidates { get; }

    /// <summary>Commits the marker, with a lease, before the exchange is sent; returns the token to send.</summary>
    public string Claim { get; }

    /// <summary>Why a store could not be claimed: migrated meanwhile, or another process holds its lease.</summary>
    public string WhyNotClaimed { get; }

    /// <summary>Stores the expiring pair over the old token (or over the pair itself, on a repeat), and clears the marker.</summary>
    public string Store { get; }

    /// <summary>Removes the marker of an exchange that was refused (nothing was exchanged).</summary>
    public string Unmark { get; }
}
