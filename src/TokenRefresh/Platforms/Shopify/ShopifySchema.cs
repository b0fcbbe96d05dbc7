using Microsoft.Extensions.Logging;
using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// shopify_stores as the catalog describes it now, read each cycle: whether it has the columns of expiring offline
/// tokens (as this role may use them) is said when first learnt and again whenever it changes.
/// </summary>
internal sealed partial class ShopifySchema(AppTables tables, ILogger<ShopifySchema> logger)
{
    public const string Table = "shopify_stores";

    /// <summary>What validating and deactivating a store needs.</summary>
    public static readonly Need[] Columns = [new("shop_domain"), new("access_token"), new("is_active", Written: true), new("updated_at", Read: false, Written: true)];

    /// <summary>What refreshing an expiring token, or exchanging a non-expiring one for it, needs besides.</summary>
    public static readonly Need[] ExpiringColumns =
    [
        new("access_token", Written: true), new("refresh_token", Written: true), new("token_expires_at", Written: true),
        new("refresh_token_expires_at", Written: true),
    ];

    private string? _said;

    /// <exception cref="SchemaException">The table lacks what validation needs.</exception>
    public async Task<TableShape> ReadAsync(CancellationToken cancellationToken)
    {
        var shape = await tables.ReadAsync(Table, Columns, ExpiringColumns, cancellationToken);
        var now = shape.OptionalMissing ?? "";
        if (Interlocked.Exchange(ref _said, now) != now)
        {
            if (shape.OptionalMissing is { } missing)
            {
                Log.Off(logger, missing);
            }
            else
            {
                Log.On(logger);
            }
        }

        return shape;
    }

    public static bool HasExpiringTokens(TableShape shape) => shape.OptionalMissing is null;

    private static partial class Log
    {
        [LoggerMessage(401, LogLevel.Information, "Shopify expiring offline tokens: supported (shopify_stores has refresh_token, token_expires_at, refresh_token_expires_at)")]
        public static partial void On(ILogger logger);

        [LoggerMessage(402, LogLevel.Warning, "Shopify expiring offline tokens: support is off ({Missing}); stores are only validated. Apply scripts/sql/shopify-expiring-tokens.sql, then scripts/sql/service-grants.sql, to turn it on")]
        public static partial void Off(ILogger logger, string missing);
    }
}
