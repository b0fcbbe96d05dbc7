using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.OAuth;

/// <summary>
/// What a refresh platform checks once a cycle, before it lists its accounts: refresh tokens near their end (a warning
/// each, and for a fixed end the announcement ahead), the daily quota, and the accounts waiting for their users (a metric).
/// </summary>
internal sealed partial class OAuthHousekeeping(IRefreshTokenPlatform platform, OAuthStatements sql, TokenRefreshMetrics metrics, ILogger logger)
{
    /// <summary>Refresh tokens that expire within this produce a warning every cycle and show in status.</summary>
    public static readonly TimeSpan RefreshTokenWarning = TimeSpan.FromDays(7);

    /// <returns>The accounts whose refresh token's end was announced now (for the webhook).</returns>
    public async Task<IReadOnlyList<DueAccount>> RunAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await WarnAboutEndingRefreshTokensAsync(connection, now, cancellationToken);
        await CheckDailyQuotaAsync(connection, now, cancellationToken);
        metrics.NeedsReauth(platform.Info.Name, await connection.ExecuteScalarAsync<long>(new CommandDefinition(sql.NeedsReauth, cancellationToken: cancellationToken)));
        return await AnnounceEndingAsync(connection, now, cancellationToken);
    }

    /// <summary>How many refreshes an account needs a day: one each time its token comes within the margin of its end.</summary>
    public static double RefreshesPerDay(TimeSpan lifetime, TimeSpan margin)
    {
        var period = lifetime - margin;
        return TimeSpan.FromDays(1) / (period > TimeSpan.FromMinutes(3) ? period : TimeSpan.FromMinutes(3));
    }

    // One warning per account per cycle while its refresh token is close to the end of its life.
    private async Task WarnAboutEndingRefreshTokensAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var ending = await connection.ReadRowsAsync<(string Id, string? Label, DateTimeOffset ExpiresAt)>(
            new CommandDefinition(sql.RefreshTokensEnding, new { WarnBefore = now + RefreshTokenWarning }, cancellationToken: cancellationToken));
        foreach (var (id, label, expiresAt) in ending)
        {
            Log.RefreshTokenExpiring(logger, platform.Info.Name, new DueAccount(id, label), expiresAt);
        }
    }

    // A refresh token with a fixed end: its user is asked to reconnect ahead of it, once (the view, NOTIFY, the webhook).
    private async Task<IReadOnlyList<DueAccount>> AnnounceEndingAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (sql.AnnounceEnding is not { } announce)
        {
            return [];
        }

        var announced = await connection.ReadRowsAsync<(string Id, string? Label)>(new CommandDefinition(
            announce, new { Now = now, AnnounceBefore = now + platform.RefreshToken.AnnouncedAhead!.Value }, cancellationToken: cancellationToken));
        foreach (var (id, label) in announced)
        {
            Log.RefreshTokenEndingAnnounced(logger, platform.Info.Name, new DueAccount(id, label), platform.RefreshToken.AnnouncedAhead.Value.TotalDays);
        }

        return [.. announced.Select(a => new DueAccount(a.Id, a.Label))];
    }

    // A platform with a daily quota per API key: what the refreshes alone take of it at the current account count;
    // in the metrics every cycle, and a warning, at most hourly for all replicas, past the share its setting allows.
    private async Task CheckDailyQuotaAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (platform.DailyQuota is not { } quota)
        {
            return;
        }

        var (accounts, perDay, remaining) = await connection.ReadRowAsync<(long, int?, int?)>(new CommandDefinition(sql.QuotaUse, cancellationToken: cancellationToken));
        var refreshes = accounts * RefreshesPerDay(platform.TokenLifetime, platform.Margin);
        metrics.DailyQuota(platform.Info.Name, perDay, remaining, refreshes);
        if (perDay is not > 0 || refreshes <= perDay.Value * quota.WarnPercent / 100.0)
        {
            return;
        }

        const string claimWarning = """
            UPDATE token_refresh_rate SET quota_warned_at = @Now
            WHERE platform = @Platform AND (quota_warned_at IS NULL OR quota_warned_at <= @Now - interval '1 hour')
            RETURNING true
            """;
        if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(claimWarning, new { Platform = platform.Info.Id, Now = now }, cancellationToken: cancellationToken)))
        {
            Log.DailyQuota(logger, platform.Info.Name, accounts, Math.Round(refreshes), Math.Round(100 * refreshes / perDay.Value), perDay.Value,
                quota.Headers.PerDay, quota.WarnSetting, quota.WarnPercent);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(111, LogLevel.Warning, "{Platform}: refreshing {Accounts} accounts takes about {Refreshes} requests a day, {Share}% of the daily quota of {PerDay} ({Header}), more than {Setting}={Percent}%. The main application's own calls count against the same quota: ask the platform for a higher limit before it runs out (the refreshes then fail with 429 and the access tokens expire)")]
        public static partial void DailyQuota(ILogger logger, string platform, long accounts, double refreshes, double share, int perDay, string header, string setting, int percent);

        [LoggerMessage(106, LogLevel.Warning, "{Platform} {Account}: its refresh token expires at {ExpiresAt:yyyy-MM-dd HH:mm} UTC; the user must re-connect before then")]
        public static partial void RefreshTokenExpiring(ILogger logger, string platform, DueAccount account, DateTimeOffset expiresAt);

        [LoggerMessage(114, LogLevel.Warning, "{Platform} {Account}: its refresh token ends within {Days} days and cannot be renewed: the user is asked to reconnect (refresh_token_ending)")]
        public static partial void RefreshTokenEndingAnnounced(ILogger logger, string platform, DueAccount account, double days);
    }
}
