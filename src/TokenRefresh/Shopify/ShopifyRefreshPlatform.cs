using Microsoft.Extensions.Options;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;

namespace TokenRefresh.Shopify;

/// <summary>Shopify's expiring offline tokens for the shared OAuth2 refresh mechanism. Limits are per app and store: no global pause.</summary>
internal sealed class ShopifyRefreshPlatform(ShopifyClient client, ShopifySchema schema, IOptions<TokenRefreshOptions> options) : IRefreshTokenPlatform
{
    private static readonly TokenTable ShopifyStores = new(
        Name: ShopifySchema.Table, KeyKind: "shop", LookupColumn: "shop_domain", LabelColumn: "shop_domain", ActiveColumn: "is_active",
        RefreshExpiryColumn: "refresh_token_expires_at");

    public string Platform => "Shopify expiring";

    public string StateKey => "shopify_refresh";

    public string CredentialSettings => "SHOPIFY_API_KEY and SHOPIFY_API_SECRET";

    public TokenTable Table => ShopifyStores;

    public TimeSpan Margin => options.Value.ShopifyRefreshMargin;

    public TimeSpan AssumedLifetime => ShopifyClient.AssumedLifetime;

    public string Group => "Shopify";

    public SharedRateLimit? RateLimit => null;

    public TimeSpan TokenLifetime => TimeSpan.FromHours(1);

    public async Task<TableShape?> ShapeAsync(CancellationToken cancellationToken) =>
        await schema.ReadAsync(cancellationToken) is { } shape && ShopifySchema.HasExpiringTokens(shape) ? shape : null;

    public string? Problem(string? label) => ShopDomain.Problem(label);

    public string? CallableSql(string alias) => ShopDomain.Sql($"{alias}.shop_domain");

    public Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken) =>
        client.RefreshAsync(label!, refreshToken, cancellationToken);
}
