using Microsoft.Extensions.DependencyInjection;
using TokenRefresh.OAuth;
using TokenRefresh.Settings;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// Shopify: its settings (SHOPIFY_*), `refresh --shop DOMAIN`, its client, and two platforms sharing one lane (and
/// SHOPIFY_MAX_CONCURRENCY): the validation of non-expiring tokens and the refresh of expiring ones. Also the move from
/// the one to the other (`tokenrefresh shopify migrate-expiring`) and the countdown to Shopify's cut-off.
/// </summary>
internal sealed class ShopifyRegistration : IPlatformRegistration
{
    /// <summary>The lane both Shopify platforms share.</summary>
    public const string Lane = "Shopify";

    public static readonly AccountOption Shop = new("shop", "DOMAIN", "The store's shop_domain", "No active Shopify store with shop_domain {0}.");

    public IReadOnlyList<Setting> Settings => ShopifySettings.Declared;

    public IReadOnlyList<AccountOption> AccountOptions => [Shop];

    public IReadOnlyList<Persistence.TableNeeds> Tables => [new(ShopifySchema.Table, ShopifySchema.Columns, ShopifySchema.ExpiringColumns)];

    public void Register(IServiceCollection services, SettingsReader settings, CycleSettings cycle)
    {
        var shopify = ShopifySettings.Read(settings);
        services.AddSingleton(shopify);
        services.AddPlatformClient<ShopifyClient>("shopify", baseAddress: null, cycle.HttpTimeout);
        services.AddSingleton<ShopifySchema>();
        services.AddSingleton<NonExpiringCutoff>();
        services.AddSingleton<IPlatform, ShopifyValidation>();
        services.AddSingleton<ShopifyExpiring>();
        services.AddRefreshTokenPlatform<ShopifyExpiring>();
        services.AddTransient<ShopifyTokenExchange>();
    }
}
