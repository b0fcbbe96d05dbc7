using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;
using TokenRefresh.Platforms;
using TokenRefresh.Platforms.Etsy;
using TokenRefresh.Platforms.Shopify;
using TokenRefresh.Scheduling;
using TokenRefresh.Settings;
using TokenRefresh.Status;

namespace TokenRefresh;

public static partial class TokenRefreshExtensions
{
    /// <summary>The platforms, a line each: a platform is its folder and its line here.</summary>
    internal static readonly IReadOnlyList<IPlatformRegistration> Platforms =
    [
        new EtsyRegistration(),
        new ShopifyRegistration(),
        new Platforms.Ebay.EbayRegistration(),
    ];

    /// <summary>Every setting the service reads, declared beside what reads it; the README's table lists the same.</summary>
    public static IReadOnlyList<Setting> Settings { get; } =
        [.. DatabaseSettings.Declared, .. CycleSettings.Declared, .. LoggingSettings.Declared, .. WebhookSettings.Declared, .. Platforms.SelectMany(p => p.Settings)];

    /// <summary>
    /// Everything the refresh cycle needs, used alike by the Function app, the CLI and the tests.
    /// Reads and validates every setting now, so a bad one stops the host before it starts.
    /// </summary>
    /// <exception cref="SettingsException">A setting is missing or malformed.</exception>
    public static IHostApplicationBuilder AddTokenRefresh(this IHostApplicationBuilder builder)
    {
        DapperSetup.Run();
        var read = new SettingsReader(builder.Configuration);
        var database = DatabaseSettings.Read(read);
        var cycle = CycleSettings.Read(read);
        var logging = LoggingSettings.Read(read);
        var services = builder.Services;
        var pool = DatabasePool.Size(database, cycle);
        services.AddSingleton(database);
        services.AddSingleton(cycle = cycle with { MaxConcurrency = pool.Concurrency });
        services.AddSingleton(logging);
        services.AddSingleton(WebhookSettings.Read(read));
        foreach (var platform in Platforms)
        {
            platform.Register(services, read, cycle);
        }

        builder.Logging.SetMinimumLevel(logging.LogLevel);
        // Polly reports timeouts that our own per-account lines already report.
        builder.Logging.AddFilter("Polly", LogLevel.Error);

        services.TryAddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.AddSingleton<TokenRefreshMetrics>();
        // Metrics over OpenTelemetry when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT, _PROTOCOL, _HEADERS).
        if (read.IsSet(LoggingSettings.OtlpEndpointSetting))
        {
            services.AddOpenTelemetry()
                .ConfigureResource(resource => resource.AddService(TokenRefreshMetrics.ServiceName(builder.Configuration)))
                .WithMetrics(metrics => metrics.AddMeter(TokenRefreshMetrics.MeterName).AddOtlpExporter());
        }

        services.TryAddSingleton(sp => pool.Build(sp, database));
        if (database.EntraAuthentication)
        {
            // The managed identity in Azure (AZURE_CLIENT_ID picks a user-assigned one), the developer's login locally.
            services.TryAddSingleton(_ => AzureCredential(null));
            services.AddSingleton<EntraPassword>();
        }

        // A slow receiver must not hold a cycle's end for long: each attempt gets at most 10 s, all of them the budget.
        var attemptTimeout = cycle.HttpTimeout < TimeSpan.FromSeconds(10) ? cycle.HttpTimeout : TimeSpan.FromSeconds(10);
        services.AddHttpClient<ReauthWebhook>(http => http.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(PlatformClients.PrimaryHandler)
            .RemoveAllLoggers()
            .AddResilienceHandler("reauth-webhook", (pipeline, context) => ReauthWebhook.AddAttempts(pipeline, context.ServiceProvider, attemptTimeout));

        services.AddSingleton<AppTables>();
        services.AddSingleton<PlatformHealthRegistry>();
        services.AddSingleton<PairWriter>();
        // One for every cycle: a cycle's state is made when it starts.
        services.AddSingleton(sp => new RefreshCycle(sp.GetServices<IPlatform>(), cycle, logging, sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<TokenRefreshMetrics>(), sp.GetRequiredService<PlatformHealthRegistry>(), sp.GetRequiredService<ReauthWebhook>(),
            sp.GetRequiredService<ILogger<RefreshCycle>>()));
        services.AddTransient<StatusReader>();
        return builder;
    }

    /// <summary>The managed identity in Azure (<paramref name="clientId"/> or AZURE_CLIENT_ID picks a user-assigned one), the developer's login locally.</summary>
    internal static Azure.Core.TokenCredential AzureCredential(string? clientId) =>
        new Azure.Identity.DefaultAzureCredential(new Azure.Identity.DefaultAzureCredentialOptions { ManagedIdentityClientId = clientId });
}
