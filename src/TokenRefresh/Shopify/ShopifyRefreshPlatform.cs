using Microsoft.Extensions.Options;
using TokenRefresh.OAuth;

namespace TokenRefresh.Shopify;

/// <summary>Shopify's expiring offline tokens for the shared OAuth2 refresh mechanism. Limits are per app and store: no global pause.</summary>
internal sealed class ShopifyRefreshPlatform(ShopifyClient client, ShopifySchema schema, IOptions<TokenRefreshOptions> options) : IRefreshTokenPlatform
{
    private static readonly TokenTable ShopifyStores = new(
        Name: "shopify_stores",
        KeyKind: "shop",
        KeyColumn: "a.shop_domain",
        ActiveFilter: "a.is_active",
        LabelColumn: "a.shop_domain",
        RefreshExpiryColumn: "refresh_token_expires_at",
        RefreshTokenExpirySql: "a.refresh_token_expires_at");

    public string Platform => "Shopify expiring";

    public string StateKey => "shopify_refresh";

    public TokenTable Table => ShopifyStores;

    public TimeSpan Margin => options.Value.ShopifyRefreshMargin;

    public TimeSpan AssumedLifetime => ShopifyClient.AssumedLifetime;

    public RateGate? Gate => null;

    public Task<bool> IsEnabledAsync(CancellationToken cancellationToken) => schema.HasExpiringTokensAsync(cancellationToken);

    public string? Problem(string? label) => ShopDomain.Problem(label);

    public Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken) =>
        client.RefreshAsync(label!, refreshToken, cancellationToken);
}
