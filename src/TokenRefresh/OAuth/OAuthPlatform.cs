using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;
using TokenRefresh.Settings;
using TokenRefresh.Status;

namespace TokenRefresh.OAuth;

/// <summary>
/// The refresh-token mechanism, the same for every OAuth2 platform: each cycle, the table's shape is read from the
/// catalog, its statements are built for it (once per shape), and an <see cref="OAuthCycle"/> does the cycle's work.
/// </summary>
internal sealed class OAuthPlatform(
    IRefreshTokenPlatform platform,
    NpgsqlDataSource db,
    PairWriter writer,
    CycleSettings settings,
    TimeProvider time,
    TokenRefreshMetrics metrics,
    PlatformHealthRegistry health,
    ILogger<OAuthPlatform> logger) : IPlatform
{
    private (TableShape Shape, OAuthStatements Statements)? _built;
    private readonly IndexAdvice _advice = new(platform.Table, logger);

    public PlatformInfo Info => platform.Info;

    public async Task<IPlatformCycle?> StartCycleAsync(CancellationToken cancellationToken)
    {
        if (await StatementsAsync(cancellationToken) is not { } built)
        {
            return null;
        }

        var housekeeping = new OAuthHousekeeping(platform, built.Statements, metrics, logger);
        return new OAuthCycle(platform, built.Statements, housekeeping, _advice, db, writer, settings, time, health.For(platform.Info.Lane), logger);
    }

    // `status` only reads: it needs only the columns the platform reads.
    public async Task<StatusSource?> StatusSourceAsync(CancellationToken cancellationToken)
    {
        if (await platform.ShapeAsync(readOnly: true, cancellationToken) is not { } shape)
        {
            return null;
        }

        return StatusSourceFor(platform, shape) with
        {
            Complete = platform.DailyQuota is { } quota ? (connection, status, ct) => WithQuotaAsync(connection, shape, status, quota, ct) : null,
        };
    }

    /// <summary>What `status` counts for a refresh platform on its table as it is.</summary>
    public static StatusSource StatusSourceFor(IRefreshTokenPlatform platform, TableShape shape)
    {
        var t = platform.Table;
        var active = $"{(t.ActiveColumn is { } column ? $"a.{column} AND " : "")}a.refresh_token IS NOT NULL";
        return new StatusSource(platform.Info, shape, "a.refresh_token", active, $"a.token_expires_at <= {shape.At("token_expires_at", "@DueBefore")}",
            platform.CallableSql("a"), platform.Info.LabelIsShopDomain ? $"a.{t.LabelColumn}" : null, OAuthStatements.RefreshTokenEndsSql(platform, shape),
            PausedReason: null)
        {
            Margin = platform.Margin,
            // A fixed end is announced ahead; one renewed by each refresh is worth saying only in its last days.
            EndingWithin = platform.RefreshToken.AnnouncedAhead ?? OAuthHousekeeping.RefreshTokenWarning,
        };
    }

    // Built again only when the table changed (a migration of the main application's).
    private async Task<(TableShape Shape, OAuthStatements Statements)?> StatementsAsync(CancellationToken cancellationToken) =>
        await platform.ShapeAsync(readOnly: false, cancellationToken) is not { } shape ? null
        : _built is { } built && built.Shape.SameAs(shape) ? built
        : _built = (shape, new OAuthStatements(platform, shape));

    private async Task<PlatformStatus> WithQuotaAsync(
        NpgsqlConnection connection, TableShape shape, PlatformStatus status, DailyQuotaWarning quota, CancellationToken cancellationToken)
    {
        var (accounts, perDay, remaining, seenAt) = await connection.ReadRowAsync<(long, int?, int?, DateTimeOffset?)>(
            new CommandDefinition(OAuthStatements.QuotaStatusSql(platform), cancellationToken: cancellationToken));
        var perAccount = OAuthHousekeeping.RefreshesPerDay(platform.TokenLifetime, platform.Margin);
        var refreshes = Math.Round(accounts * perAccount);
        var share = new QuotaStatus(perDay, remaining, seenAt, accounts, refreshes, perDay is > 0 ? Math.Round(100 * refreshes / perDay.Value, 1) : null, quota.WarnPercent);
        if (perDay is not { } limit || refreshes <= limit)
        {
            return status with { Quota = share };
        }

        // More accounts than the quota keeps refreshed: the rest expire, the first once the requests left today are spent.
        var from = await connection.ReadRowOrDefaultAsync<DateTimeOffset?>(new CommandDefinition(
            OAuthStatements.QuotaRunsOutSql(platform, shape), new { Remaining = Math.Max(0, remaining ?? limit) }, cancellationToken: cancellationToken));
        return status with { Quota = share with { ExpiringForWantOfQuota = accounts - (long)Math.Floor(limit / perAccount), ExpiringFrom = from } };
    }
}

internal static class OAuthRegistration
{
    /// <summary>Registers a refresh platform (its description, <typeparamref name="TPlatform"/>, a singleton) with the shared mechanism.</summary>
    public static IServiceCollection AddRefreshTokenPlatform<TPlatform>(this IServiceCollection services)
        where TPlatform : class, IRefreshTokenPlatform =>
        services.AddSingleton<IPlatform>(sp => ActivatorUtilities.CreateInstance<OAuthPlatform>(sp, sp.GetRequiredService<TPlatform>()));
}
