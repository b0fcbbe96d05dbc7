using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;
using TokenRefresh.OAuth;
using TokenRefresh.Shopify;

namespace TokenRefresh.Persistence;

/// <summary>
/// One account that needs attention: <c>not_called</c> (a shop_domain that is not {name}.myshopify.com), <c>needs_reauth</c>,
/// <c>backing_off</c>, or <c>refresh_token_expiring</c> (its refresh token ends within 7 days).
/// </summary>
public sealed record AttentionAccount(
    string Id, string? Shop, string Group, int ConsecutiveFailures, string? LastError, DateTimeOffset? LastErrorAt,
    DateTimeOffset? NextAttemptAt, DateTimeOffset? RefreshTokenExpiresAt);

/// <summary>
/// Per platform: how many accounts are due, fine lately, backing off, need re-authorisation, have a refresh token about to expire,
/// or are never called (<see cref="NotCalled"/>: Shopify stores whose shop_domain is not {name}.myshopify.com); and stores
/// rejected while the incident guard paused deactivation (<see cref="DeactivationPaused"/>, among those backing off).
/// </summary>
public sealed record PlatformStatus(
    string Platform, long Due, long Recent, long BackingOff, long NeedsReauth, long RefreshTokenExpiring, long NotCalled, long DeactivationPaused,
    IReadOnlyList<AttentionAccount> Accounts)
{
    /// <summary>The platform's daily quota and what the refreshes take of it (Etsy); null for platforms without one.</summary>
    public QuotaStatus? Quota { get; init; }

    /// <summary>Shopify's cut-off for non-expiring offline tokens and the active stores still holding one; null elsewhere, or with none set.</summary>
    public CutoffStatus? NonExpiringCutoff { get; init; }
}

/// <summary>
/// A daily quota per API key: <paramref name="PerDay"/> and <paramref name="Remaining"/> as the platform's last answer
/// gave them (null before any), and the requests a day that refreshing <paramref name="Accounts"/> accounts takes.
/// </summary>
public sealed record QuotaStatus(int? PerDay, int? Remaining, DateTimeOffset? SeenAt, long Accounts, double RefreshesPerDay, double? SharePercent, int WarnPercent);

/// <summary>Reads what <c>tokenrefresh status</c> shows, straight from the main tables and the service's state.</summary>
internal sealed class StatusReader(
    NpgsqlDataSource db, AppTables tables, ShopifySchema shopify, NonExpiringCutoff cutoff, IOptions<TokenRefreshOptions> options, TimeProvider time)
{
    /// <summary>"Fine lately" means a success within this window: an access token lives an hour.</summary>
    public static readonly TimeSpan RecentWindow = TimeSpan.FromHours(1);

    /// <param name="RefreshExpiry">When the refresh token ends (SQL), for platforms that refresh; null for validation.</param>
    private sealed record Source(
        string Platform, string StateKey, TableShape Table, string TokenColumn, string Active, string Due, string? ShopColumn, string? RefreshExpiry)
    {
        /// <summary>The accounts that are never called.</summary>
        public string NotCalled => ShopColumn is null ? "false" : $"NOT COALESCE({ShopDomain.Sql(ShopColumn)}, false)";
    }

    /// <exception cref="SchemaException">A table lacks what the service needs.</exception>
    public async Task<IReadOnlyList<PlatformStatus>> ReadAsync(CancellationToken cancellationToken)
    {
        var etsy = await tables.ReadAsync("etsy_users", [new("refresh_token"), new("token_expires_at")], [], cancellationToken);
        var stores = await shopify.ReadAsync(cancellationToken);
        var expiring = ShopifySchema.HasExpiringTokens(stores);
        List<Source> sources =
        [
            new("Etsy", "etsy", etsy, "a.refresh_token", "a.refresh_token IS NOT NULL", $"a.token_expires_at <= {etsy.At("token_expires_at", "@EtsyDueBefore")}", null,
                "(s.last_success_at + interval '90 days')"),
            new("Shopify", "shopify", stores, "COALESCE(a.access_token, '')", expiring ? "a.is_active AND a.refresh_token IS NULL" : "a.is_active",
                ShopifyValidator.IntervalSql(stores.Key("a")), "a.shop_domain", null),
        ];
        if (expiring)
        {
            sources.Add(new("Shopify expiring", "shopify_refresh", stores, "a.refresh_token", "a.is_active AND a.refresh_token IS NOT NULL",
                $"a.token_expires_at <= {stores.At("token_expires_at", "@ShopifyDueBefore")}", "a.shop_domain", stores.Time("a", "refresh_token_expires_at")));
        }

        var now = time.GetUtcNow();
        var parameters = new
        {
            Now = now,
            EtsyDueBefore = now + options.Value.EtsyRefreshMargin,
            ShopifyDueBefore = now + options.Value.ShopifyRefreshMargin,
            RecentSince = now - RecentWindow,
            WarnBefore = now + OAuthRefresher.RefreshTokenWarning,
            IntervalSeconds = (long)options.Value.ShopifyValidateInterval.TotalSeconds,
        };
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var result = new List<PlatformStatus>();
        foreach (var source in sources)
        {
            // State rows count only while they are about the token the row holds now.
            var current = $"s.token_hash = encode(sha256(convert_to({source.TokenColumn}, 'UTF8')), 'hex')";
            var reauth = $"COALESCE({current} AND s.needs_reauth, false)";
            var backingOff = $"COALESCE({current} AND NOT s.needs_reauth AND s.next_attempt_at > @Now, false)";
            var ending = source.RefreshExpiry is { } expiry ? $"COALESCE({expiry} <= @WarnBefore AND NOT {reauth}, false)" : "false";
            var join = $"FROM {source.Table.Name} a LEFT JOIN token_refresh_state s ON s.platform = '{source.StateKey}' AND s.account_id = {source.Table.Id("a")}";
            var counts = await connection.ReadRowAsync<(long Due, long Recent, long BackingOff, long NeedsReauth, long Ending, long NotCalled, long Paused)>(new CommandDefinition($"""
                SELECT
                    count(*) FILTER (WHERE {source.Due} AND NOT {source.NotCalled} AND {AccountState.EligibleSql(source.TokenColumn)}),
                    count(*) FILTER (WHERE s.last_success_at >= @RecentSince),
                    count(*) FILTER (WHERE {backingOff}),
                    count(*) FILTER (WHERE {reauth}),
                    count(*) FILTER (WHERE {ending}),
                    count(*) FILTER (WHERE {source.NotCalled}),
                    count(*) FILTER (WHERE {backingOff} AND s.last_error = '{ShopifyValidator.DeactivationPaused}')
                {join}
                WHERE {source.Active}
                """, parameters, cancellationToken: cancellationToken));
            var accounts = await connection.ReadRowsAsync<AttentionAccount>(new CommandDefinition($"""
                SELECT {source.Table.Id("a")} AS Id, {source.ShopColumn ?? "NULL"} AS Shop,
                       CASE WHEN {source.NotCalled} THEN 'not_called' WHEN {reauth} THEN 'needs_reauth' WHEN {backingOff} THEN 'backing_off'
                            ELSE 'refresh_token_expiring' END AS "Group",
                       COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError,
                       s.last_error_at AS LastErrorAt, s.next_attempt_at AS NextAttemptAt,
                       {source.RefreshExpiry ?? "NULL::timestamptz"} AS RefreshTokenExpiresAt
                {join}
                WHERE {source.Active} AND ({source.NotCalled} OR {reauth} OR {backingOff} OR {ending})
                ORDER BY 3 DESC, s.last_error_at DESC
                LIMIT 500
                """, parameters, cancellationToken: cancellationToken));
            result.Add(new PlatformStatus(
                source.Platform, counts.Due, counts.Recent, counts.BackingOff, counts.NeedsReauth, counts.Ending, counts.NotCalled, counts.Paused, accounts.ToList())
            {
                Quota = source.StateKey == "etsy" ? await QuotaAsync(connection, source, cancellationToken) : null,
                NonExpiringCutoff = source.StateKey == "shopify" ? await cutoff.ReadAsync(connection, stores, cancellationToken) : null,
            });
        }

        return result;
    }

    private async Task<QuotaStatus> QuotaAsync(NpgsqlConnection connection, Source source, CancellationToken cancellationToken)
    {
        var (accounts, perDay, remaining, seenAt) = await connection.ReadRowAsync<(long, int?, int?, DateTimeOffset?)>(new CommandDefinition($"""
            SELECT (SELECT count(*) FROM {source.Table.Name} a WHERE {source.Active}), r.quota_per_day, r.remaining_today, r.quota_seen_at
            FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = @Platform
            """, new { Platform = source.StateKey }, cancellationToken: cancellationToken));
        var refreshes = Math.Round(accounts * OAuthRefresher.RefreshesPerDay(Etsy.EtsyClient.DocumentedLifetime, options.Value.EtsyRefreshMargin));
        return new QuotaStatus(perDay, remaining, seenAt, accounts, refreshes, perDay is > 0 ? Math.Round(100 * refreshes / perDay.Value, 1) : null,
            options.Value.EtsyQuotaWarnPercent);
    }
}
