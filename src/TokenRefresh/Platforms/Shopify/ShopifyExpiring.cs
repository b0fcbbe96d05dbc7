using TokenRefresh.OAuth;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>Shopify's expiring offline tokens for the shared refresh mechanism. Limits are per app and store: no global pause.</summary>
internal sealed class ShopifyExpiring(ShopifyClient client, ShopifySchema schema, ShopifySettings settings) : IRefreshTokenPlatform
{
    private static readonly TokenTable ShopifyStores = new(ShopifySchema.Table, LookupColumn: "shop_domain", LabelColumn: "shop_domain", ActiveColumn: "is_active");

    public PlatformInfo Info { get; } = new("shopify_refresh", "Shopify expiring", ShopifyRegistration.Lane, settings.MaxConcurrency, Outcome.Refreshed, ShopifyRegistration.Shop)
    {
        LabelIsShopDomain = true,
    };

    public TokenTable Table => ShopifyStores;

    // A new pair with every refresh; the refresh token lives 90 days from it, as refresh_token_expires_in says.
    public RefreshTokenLife RefreshToken { get; } = new(Rotates: true, TimeSpan.FromDays(90), EndColumn: "refresh_token_expires_at");

    public TimeSpan Margin => settings.RefreshMargin;

    public TimeSpan TokenLifetime => TimeSpan.FromHours(1);

    public TimeSpan AssumedLifetime => ShopifyClient.AssumedLifetime;

    public string CredentialSettings => "SHOPIFY_API_KEY and SHOPIFY_API_SECRET";

    public SharedRateLimit? RateLimit => null;

    public DailyQuotaWarning? DailyQuota => null;

    // Validation needs to write the table anyway: `status` reads it as a cycle does.
    public async Task<TableShape?> ShapeAsync(bool readOnly, CancellationToken cancellationToken) =>
        await schema.ReadAsync(cancellationToken) is { } shape && ShopifySchema.HasExpiringTokens(shape) ? shape : null;

    public string? Problem(string? label) => ShopDomain.Problem(label);

    public string? CallableSql(string alias) => ShopDomain.Sql($"{alias}.shop_domain");

    public Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken) =>
        client.RefreshAsync(label!, refreshToken, cancellationToken);
}
