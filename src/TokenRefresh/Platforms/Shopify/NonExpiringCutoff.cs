using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// Where the stores stand against Shopify's cut-off for non-expiring offline tokens (SHOPIFY_NON_EXPIRING_CUTOFF):
/// how many active stores still hold one, the day, and the days left.
/// </summary>
public sealed record CutoffStatus(DateOnly Date, int DaysLeft, long NonExpiringStores, bool ExpiringColumns)
{
    /// <summary>What to run to see which stores would move.</summary>
    public string Command { get; } = NonExpiringCutoff.DryRunCommand;

    /// <summary>What the operator must do first, when shopify_stores cannot hold expiring tokens yet.</summary>
    public string? FirstApply => ExpiringColumns ? null : NonExpiringCutoff.ColumnsScript;

    /// <summary>What to do: move the stores, after adding the columns when the table lacks them.</summary>
    public string Action => FirstApply is { } script
        ? $"Apply {script} (then scripts/sql/service-grants.sql), then run `{Command}` and `tokenrefresh shopify migrate-expiring --all --yes`"
        : $"Run `{Command}`, then `tokenrefresh shopify migrate-expiring --all --yes`";

    /// <summary>Status's line: the count, the day, the days left, and what to do.</summary>
    public override string ToString()
    {
        var when = DaysLeft > 0 ? $"Shopify refuses them from {Date:yyyy-MM-dd} ({DaysLeft} days left)"
            : DaysLeft == 0 ? $"Shopify refuses them from today, {Date:yyyy-MM-dd}"
            : $"Shopify has refused them since {Date:yyyy-MM-dd} ({-DaysLeft} days ago)";
        return NonExpiringStores == 0
            ? $"no active store holds a non-expiring offline token: ready for {Date:yyyy-MM-dd}."
            : $"{NonExpiringStores} active stores still hold a non-expiring offline token; {when}. {Action}.";
    }
}

/// <summary>The countdown: a warning an hour for all replicas from 30 days before the cut-off, and status's line.</summary>
internal sealed partial class NonExpiringCutoff(ShopifySettings settings, TimeProvider time, ILogger<NonExpiringCutoff> logger)
{
    public static readonly TimeSpan WarnAhead = TimeSpan.FromDays(30);

    public const string DryRunCommand = "tokenrefresh shopify migrate-expiring --all --dry-run";

    public const string ColumnsScript = "scripts/sql/shopify-expiring-tokens.sql";

    private const string Notice = "shopify_non_expiring_cutoff";

    /// <summary>The count, the day and the days left; null when there is no cut-off (SHOPIFY_NON_EXPIRING_CUTOFF=none).</summary>
    public async Task<CutoffStatus?> ReadAsync(NpgsqlConnection connection, TableShape stores, CancellationToken cancellationToken)
    {
        if (settings.NonExpiringCutoff is not { } cutoff)
        {
            return null;
        }

        var expiring = ShopifySchema.HasExpiringTokens(stores);
        var count = await connection.ExecuteScalarAsync<long>(new CommandDefinition(CountSql(stores), cancellationToken: cancellationToken));
        var today = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
        return new CutoffStatus(cutoff, cutoff.DayNumber - today.DayNumber, count, expiring);
    }

    /// <summary>The active stores that hold a non-expiring token: without a refresh token (all of them, while the table has no such column).</summary>
    public static string CountSql(TableShape stores) => $"""
        SELECT count(*) FROM {ShopifySchema.Table} st
        WHERE st.is_active AND COALESCE(st.access_token, '') <> ''{(ShopifySchema.HasExpiringTokens(stores) ? " AND st.refresh_token IS NULL" : "")}
        """;

    /// <summary>
    /// From 30 days before the cut-off (and after it, while any store is left): one warning an hour for all replicas
    /// together. The count is read only by the replica that says it.
    /// </summary>
    public async Task WarnAsync(NpgsqlConnection connection, TableShape stores, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (settings.NonExpiringCutoff is not { } cutoff
            || now < new DateTimeOffset(cutoff.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero) - WarnAhead
            || !await HourlyNotice.ClaimAsync(connection, Notice, now, cancellationToken)
            || await ReadAsync(connection, stores, cancellationToken) is not { NonExpiringStores: > 0 } status)
        {
            return;
        }

        if (status.DaysLeft > 0)
        {
            Log.Ahead(logger, status.NonExpiringStores, status.Date.ToString("yyyy-MM-dd", null), status.DaysLeft, status.Action);
        }
        else
        {
            Log.Passed(logger, status.NonExpiringStores, status.Date.ToString("yyyy-MM-dd", null), status.Action);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(405, LogLevel.Warning, "Shopify non-expiring tokens: {Stores} active stores still hold one, and Shopify stops accepting them on {Cutoff} ({DaysLeft} days left; SHOPIFY_NON_EXPIRING_CUTOFF). {Advice}")]
        public static partial void Ahead(ILogger logger, long stores, string cutoff, int daysLeft, string advice);

        [LoggerMessage(406, LogLevel.Error, "Shopify non-expiring tokens: {Stores} active stores still hold one, which Shopify refuses since {Cutoff} (SHOPIFY_NON_EXPIRING_CUTOFF). {Advice}")]
        public static partial void Passed(ILogger logger, long stores, string cutoff, string advice);
    }
}
