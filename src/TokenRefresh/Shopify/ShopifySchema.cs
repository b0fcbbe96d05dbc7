using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Shopify;

/// <summary>
/// Whether shopify_stores has the three columns of expiring offline tokens (as this role sees them).
/// Probed once per process, and said once: on, or off with the columns that are missing.
/// </summary>
internal sealed partial class ShopifySchema(NpgsqlDataSource db, TimeProvider time, ILogger<ShopifySchema> logger) : IDisposable
{
    public static readonly string[] ExpiringColumns = ["refresh_token", "token_expires_at", "refresh_token_expires_at"];

    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool? _hasExpiringTokens;

    public async Task<bool> HasExpiringTokensAsync(CancellationToken cancellationToken)
    {
        if (_hasExpiringTokens is { } known)
        {
            return known;
        }

        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_hasExpiringTokens is null)
            {
                const string sql = """
                    SELECT column_name FROM information_schema.columns
                    WHERE table_schema = current_schema() AND table_name = 'shopify_stores' AND column_name = ANY(@Columns)
                    """;
                var present = await DatabaseRetry.ReadAsync(time, async ct =>
                {
                    await using var connection = await db.OpenConnectionAsync(ct);
                    return (await connection.QueryAsync<string>(new CommandDefinition(sql, new { Columns = ExpiringColumns }, cancellationToken: ct))).ToHashSet();
                }, cancellationToken);
                var missing = ExpiringColumns.Where(c => !present.Contains(c)).ToList();
                if (missing.Count == 0)
                {
                    Log.On(logger);
                }
                else
                {
                    Log.Off(logger, string.Join(", ", missing));
                }

                _hasExpiringTokens = missing.Count == 0;
            }

            return _hasExpiringTokens.Value;
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose() => _gate.Dispose();

    private static partial class Log
    {
        [LoggerMessage(401, LogLevel.Information, "Shopify expiring offline tokens: supported (shopify_stores has refresh_token, token_expires_at, refresh_token_expires_at)")]
        public static partial void On(ILogger logger);

        [LoggerMessage(402, LogLevel.Warning, "Shopify expiring offline tokens: support is off, because shopify_stores lacks (or this role cannot see) {Missing}; stores are only validated. Apply scripts/sql/shopify-expiring-tokens.sql to turn it on")]
        public static partial void Off(ILogger logger, string missing);
    }
}
