using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TokenRefresh.OAuth;
using TokenRefresh.Scheduling;
using TokenRefresh.Settings;

namespace TokenRefresh.Platforms.Etsy;

/// <summary>Etsy: its settings (ETSY_*), `refresh --etsy-user ID`, its client, its rate limit shared by every replica, and its platform.</summary>
internal sealed class EtsyRegistration : IPlatformRegistration
{
    public static readonly AccountOption User = new("etsy-user", "ID", "The Etsy user's id (etsy_users key)", "No Etsy user {0} with a refresh token.");

    public IReadOnlyList<Setting> Settings => EtsySettings.Declared;

    public IReadOnlyList<AccountOption> AccountOptions => [User];

    public IReadOnlyList<Persistence.TableNeeds> Tables => [new(EtsyPlatform.UsersTable, EtsyPlatform.Columns)];

    public void Register(IServiceCollection services, SettingsReader settings, CycleSettings cycle)
    {
        var etsy = EtsySettings.Read(settings);
        services.AddSingleton(etsy);
        // ETSY_MAX_REQUESTS_PER_SECOND is kept before the claim, for every replica (SharedRateLimit), not in the client.
        services.AddPlatformClient<EtsyClient>("etsy", etsy.ApiBaseUrl, cycle.HttpTimeout);
        services.AddKeyedSingleton(EtsyPlatform.Description.Id, (sp, _) =>
            new SharedRateLimit(sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<TimeProvider>(), EtsyPlatform.Description.Id, etsy.MaxRequestsPerSecond));
        services.AddSingleton<EtsyPlatform>();
        services.AddRefreshTokenPlatform<EtsyPlatform>();
    }
}
