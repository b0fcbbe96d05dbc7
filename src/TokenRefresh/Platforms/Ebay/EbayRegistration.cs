using Microsoft.Extensions.DependencyInjection;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;
using TokenRefresh.Settings;

namespace TokenRefresh.Platforms.Ebay;

/// <summary>eBay, opt-in: its settings (EBAY_*), `refresh --ebay-user ID`, its client and its platform, when EBAY_CLIENT_ID is set.</summary>
internal sealed class EbayRegistration : IPlatformRegistration
{
    public static readonly AccountOption User = new("ebay-user", "ID", "The eBay user's id (ebay_users key)", "No eBay user {0} with a refresh token.");

    public IReadOnlyList<Setting> Settings => EbaySettings.Declared;

    public IReadOnlyList<AccountOption> AccountOptions => [User];

    public IReadOnlyList<TableNeeds> Tables => [new(EbayPlatform.UsersTable, EbayPlatform.Columns, TableOptional: true)];

    public void Register(IServiceCollection services, SettingsReader settings, CycleSettings cycle)
    {
        if (EbaySettings.Read(settings) is not { } ebay)
        {
            return;
        }

        services.AddSingleton(ebay);
        services.AddPlatformClient<EbayClient>("ebay", ebay.ApiBaseUrl, cycle.HttpTimeout);
        services.AddSingleton<EbayPlatform>();
        services.AddRefreshTokenPlatform<EbayPlatform>();
    }
}
