using System.Text.RegularExpressions;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// Where Shopify calls may go: a store's permanent domain, {name}.myshopify.com, and nothing else (CONTRACTS.md).
/// A token or the app secret sent to any other host is leaked, so any other shop_domain is never called.
/// </summary>
internal static partial class ShopDomain
{
    public const string Rule = "shop_domain is not {name}.myshopify.com (lower-case letters, digits and hyphens)";

    // The one rule, anchored for each engine: .NET's \z (its $ would accept a trailing newline), PostgreSQL's $.
    private const string Core = @"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.myshopify\.com";

    /// <summary>Why a shop_domain must not be called, or null.</summary>
    public static string? Problem(string? shopDomain) => shopDomain is not null && Pattern().IsMatch(shopDomain) ? null : Rule;

    /// <summary>
    /// The same rule as a SQL condition on <paramref name="column"/>, so stores that break it are never selected. The
    /// name's length and suffix are checked apart, and the name only for a character it may not hold (PostgreSQL's regex
    /// engine costs a microsecond or more for each character it walks: 2.5 s at a million stores for the whole rule in one
    /// pattern, 0.8 s for this).
    /// </summary>
    public static string Sql(string column) =>
        $"(length({column}) <= 77 AND {column} LIKE '_%.myshopify.com' AND left({column}, -14) !~ '[^a-z0-9-]|^-|-$')";

    [GeneratedRegex(@"^" + Core + @"\z", RegexOptions.CultureInvariant)]
    private static partial Regex Pattern();

    /// <summary>
    /// One warning an hour, for all replicas together, for the active stores whose shop_domain breaks the rule: they are
    /// never called, so never deactivated; `status` lists them. Looked for only by the replica that says it: it is a
    /// scan of every store.
    /// </summary>
    public static async Task WarnAboutUncallableAsync(
        NpgsqlConnection connection, Persistence.TableShape stores, string platform, DateTimeOffset now, ILogger logger, CancellationToken cancellationToken)
    {
        if (!await HourlyNotice.ClaimAsync(connection, "shopify_uncallable_stores", now, cancellationToken))
        {
            return;
        }

        var rows = await connection.ReadRowsAsync<(long Total, string Id, string? ShopDomain)>(new CommandDefinition(UncallableSql(stores), cancellationToken: cancellationToken));
        if (rows.Count > 0)
        {
            // Quoted, so that a newline or a space in the value shows instead of shaping the log line.
            var examples = string.Join(", ", rows.Select(r => $"{System.Text.Json.JsonSerializer.Serialize(r.ShopDomain)} ({r.Id})"));
            Log.Uncallable(logger, platform, rows[0].Total, Rule, examples);
        }
    }

    /// <summary>The active stores that break the rule: how many, and the first five.</summary>
    public static string UncallableSql(Persistence.TableShape stores) => $"""
        SELECT count(*) OVER () AS Total, {stores.Id("st")} AS Id, st.shop_domain AS ShopDomain
        FROM {stores.Name} st
        WHERE st.is_active AND NOT COALESCE({Sql("st.shop_domain")}, false)
        ORDER BY st.shop_domain
        LIMIT 5
        """;

    private static partial class Log
    {
        [LoggerMessage(403, LogLevel.Warning, "{Platform}: {Count} active stores are not called, because their {Rule}: {Examples}; `tokenrefresh status` lists them")]
        public static partial void Uncallable(ILogger logger, string platform, long count, string rule, string examples);
    }
}
