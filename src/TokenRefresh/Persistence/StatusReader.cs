using Dapper;
using Microsoft.Extensions.Options;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>One account that needs attention: backing off, or waiting for the user to re-authorise.</summary>
public sealed record AttentionAccount(
    Guid Id, string? Shop, bool NeedsReauth, int ConsecutiveFailures, string? LastError, DateTimeOffset? LastErrorAt, DateTimeOffset? NextAttemptAt);

/// <summary>Per platform: how many accounts are due, fine lately, backing off, or need re-authorisation.</summary>
public sealed record PlatformStatus(string Platform, long Due, long Recent, long BackingOff, long NeedsReauth, IReadOnlyList<AttentionAccount> Accounts);

/// <summary>Reads what <c>tokenrefresh status</c> shows, straight from the main tables and the service's state.</summary>
internal sealed class StatusReader(NpgsqlDataSource db, IOptions<TokenRefreshOptions> options, TimeProvider time)
{
    /// <summary>"Refreshed recently" means within this window: an Etsy access token lives an hour.</summary>
    public static readonly TimeSpan RecentWindow = TimeSpan.FromHours(1);

    private sealed record Source(string Platform, string StatePlatform, string Table, string TokenColumn, string Active, string Due, string? ShopColumn);

    private static readonly Source[] Sources =
    [
        new("Etsy", "etsy", "etsy_users", "a.refresh_token", "a.refresh_token IS NOT NULL", "a.token_expires_at <= @DueBefore", null),
        new("Shopify", "shopify", "shopify_stores", "COALESCE(a.access_token, '')", "a.is_active", "true", "a.shop_domain"),
    ];

    public async Task<IReadOnlyList<PlatformStatus>> ReadAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var parameters = new { Now = now, DueBefore = now + options.Value.EtsyRefreshMargin, RecentSince = now - RecentWindow };
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var result = new List<PlatformStatus>();
        foreach (var source in Sources)
        {
            // State rows count only while they are about the token the row holds now.
            var current = $"s.token_hash = encode(sha256(convert_to({source.TokenColumn}, 'UTF8')), 'hex')";
            var join = $"FROM {source.Table} a LEFT JOIN token_refresh_state s ON s.platform = '{source.StatePlatform}' AND s.account_id = a.id";
            var counts = await connection.QuerySingleAsync<(long Due, long Recent, long BackingOff, long NeedsReauth)>(new CommandDefinition($"""
                SELECT
                    count(*) FILTER (WHERE {source.Due} AND {AccountState.EligibleSql(source.TokenColumn)}),
                    count(*) FILTER (WHERE s.last_success_at >= @RecentSince),
                    count(*) FILTER (WHERE {current} AND NOT s.needs_reauth AND s.next_attempt_at > @Now),
                    count(*) FILTER (WHERE {current} AND s.needs_reauth)
                {join}
                WHERE {source.Active}
                """, parameters, cancellationToken: cancellationToken));
            var accounts = await connection.QueryAsync<AttentionAccount>(new CommandDefinition($"""
                SELECT a.id AS Id, {source.ShopColumn ?? "NULL"} AS Shop, s.needs_reauth AS NeedsReauth,
                       s.consecutive_failures AS ConsecutiveFailures, s.last_error AS LastError,
                       s.last_error_at AS LastErrorAt, s.next_attempt_at AS NextAttemptAt
                {join}
                WHERE {source.Active} AND {current} AND (s.needs_reauth OR s.next_attempt_at > @Now)
                ORDER BY s.needs_reauth DESC, s.last_error_at DESC
                LIMIT 500
                """, parameters, cancellationToken: cancellationToken));
            result.Add(new PlatformStatus(source.Platform, counts.Due, counts.Recent, counts.BackingOff, counts.NeedsReauth, accounts.ToList()));
        }

        return result;
    }
}
