using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Polly;
using TokenRefresh.Persistence;
using TokenRefresh.Etsy;
using TokenRefresh.OAuth;
using TokenRefresh.Shopify;

namespace TokenRefresh;

public static partial class TokenRefreshExtensions
{
    /// <summary>
    /// Everything the refresh cycle needs, used alike by the Function app, the CLI and the tests.
    /// Reads and validates every setting now, so a bad one stops the host before it starts.
    /// </summary>
    /// <exception cref="SettingsException">A setting is missing or malformed.</exception>
    public static IHostApplicationBuilder AddTokenRefresh(this IHostApplicationBuilder builder)
    {
        var options = TokenRefreshOptions.Load(builder.Configuration);
        DapperSetup.Run();
        var services = builder.Services;

        // The pool: an operator's size (max_pool_size in DATABASE_URL, or Maximum Pool Size) is kept as it is, and
        // the accounts in flight are bounded to fit in it; otherwise one connection per account in flight, plus the
        // platforms' listing queries. No statement is prepared unless asked for (max_auto_prepare): PgBouncer before
        // 1.21 in transaction mode, and other poolers, cannot carry prepared statements from one transaction to the next.
        var connection = new NpgsqlConnectionStringBuilder(options.ConnectionString);
        var poolSizeGiven = DatabaseUrl.SetsMaxPoolSize(options.ConnectionString);
        var requestedConcurrency = options.MaxConcurrency;
        if (!poolSizeGiven)
        {
            connection.MaxPoolSize = options.MaxConcurrency + ListingConnections;
        }
        else if (connection.MaxPoolSize < options.MaxConcurrency + ListingConnections)
        {
            options = options with { MaxConcurrency = Math.Max(1, connection.MaxPoolSize - ListingConnections) };
        }

        services.AddSingleton(Options.Create(options));

        builder.Logging.SetMinimumLevel(options.LogLevel);
        // Polly reports timeouts that our own per-account lines already report.
        builder.Logging.AddFilter("Polly", LogLevel.Error);

        services.TryAddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.AddSingleton<TokenRefreshMetrics>();
        // Metrics over OpenTelemetry when an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT, _PROTOCOL, _HEADERS).
        if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            services.AddOpenTelemetry()
                .ConfigureResource(resource => resource.AddService(TokenRefreshMetrics.ServiceName(builder.Configuration)))
                .WithMetrics(metrics => metrics.AddMeter(TokenRefreshMetrics.MeterName).AddOtlpExporter());
        }

        services.TryAddSingleton(sp =>
        {
            // Said once, when the first connection is wanted.
            var logger = sp.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Database");
            if (options.MaxConcurrency < requestedConcurrency)
            {
                DatabaseLog.PoolBoundsConcurrency(logger, connection.MaxPoolSize, options.MaxConcurrency, requestedConcurrency);
            }

            if (connection.SslMode is not (SslMode.VerifyCA or SslMode.VerifyFull) && !DatabaseUrl.IsLoopback(connection.Host))
            {
                DatabaseLog.ServerNotVerified(logger, connection.SslMode.ToString().ToLowerInvariant());
            }

            var dataSource = new NpgsqlDataSourceBuilder(connection.ConnectionString);
            if (options.EntraAuthentication)
            {
                var password = sp.GetRequiredService<EntraPassword>();
                dataSource.UsePasswordProvider(_ => password.GetAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult(), (_, ct) => password.GetAsync(ct));
            }

            return dataSource.Build();
        });
        if (options.EntraAuthentication)
        {
            // The managed identity in Azure (AZURE_CLIENT_ID picks a user-assigned one), the developer's login locally.
            services.TryAddSingleton<Azure.Core.TokenCredential>(_ => new Azure.Identity.DefaultAzureCredential());
            services.AddSingleton<EntraPassword>();
        }

        // No framework HTTP logging: its Trace header records carry the raw X-Shopify-Access-Token and
        // x-api-key values in their structured state even with RedactLoggedHeaders (caught by a test).
        // Our own per-account lines say what each call did.
        services.AddHttpClient<EtsyClient>(http => Configure(http, options.EtsyApiBaseUrl))
            .ConfigurePrimaryHttpMessageHandler(PrimaryHandler)
            .RemoveAllLoggers()
            // ETSY_MAX_REQUESTS_PER_SECOND is kept before the claim, for every replica (SharedRateLimit), not here.
            .AddResilienceHandler("etsy", pipeline => pipeline.AddTimeout(options.HttpTimeout));
        services.AddHttpClient<ShopifyClient>(http => Configure(http, baseAddress: null))
            .ConfigurePrimaryHttpMessageHandler(PrimaryHandler)
            .RemoveAllLoggers()
            .AddResilienceHandler("shopify", pipeline => pipeline.AddTimeout(options.HttpTimeout));

        // A slow receiver must not hold a cycle's end for long: each attempt gets at most 10 s.
        services.AddHttpClient<ReauthWebhook>(http => http.Timeout = options.HttpTimeout < TimeSpan.FromSeconds(10) ? options.HttpTimeout : TimeSpan.FromSeconds(10))
            .ConfigurePrimaryHttpMessageHandler(PrimaryHandler)
            .RemoveAllLoggers();

        // One per process, for every cycle: the limit itself lives in the database, shared by every replica.
        services.AddKeyedSingleton("Etsy", (sp, _) => new SharedRateLimit(sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<TimeProvider>(), "etsy", options.EtsyMaxRequestsPerSecond));
        services.AddSingleton<AppTables>();
        services.AddSingleton<PlatformHealthRegistry>();
        services.AddSingleton<ShopifySchema>();
        services.AddSingleton<NonExpiringCutoff>();
        services.AddSingleton<PairWriter>();

        // Transient, so each cycle gets fresh typed HttpClients from the factory.
        // One refresh mechanism for every OAuth2 platform: each supplies only its table, request and limits.
        services.AddTransient<EtsyPlatform>();
        services.AddTransient<ShopifyRefreshPlatform>();
        services.AddTransient<IPlatformRefresher>(sp => ActivatorUtilities.CreateInstance<OAuthRefresher>(sp, sp.GetRequiredService<EtsyPlatform>()));
        services.AddTransient<IPlatformRefresher, ShopifyValidator>();
        services.AddTransient<IPlatformRefresher>(sp => ActivatorUtilities.CreateInstance<OAuthRefresher>(sp, sp.GetRequiredService<ShopifyRefreshPlatform>()));
        services.AddTransient<RefreshCycle>();
        services.AddTransient<StatusReader>();
        services.AddTransient<ShopifyTokenExchange>();
        return builder;
    }

    // Redirects are never followed: a 3xx is reported, and the token or secret goes nowhere else (CONTRACTS.md).
    private static SocketsHttpHandler PrimaryHandler() => new() { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(5) };

    /// <summary>Connections besides those of the accounts in flight: the platforms' listing queries, side by side.</summary>
    internal const int ListingConnections = 4;

    private static void Configure(HttpClient http, Uri? baseAddress)
    {
        http.BaseAddress = baseAddress;
        // The resilience pipeline owns the timeout; a token response is small, anything bigger is not one.
        http.Timeout = Timeout.InfiniteTimeSpan;
        http.MaxResponseContentBufferSize = 1024 * 1024;
        http.DefaultRequestHeaders.UserAgent.ParseAdd("TokenRefresh/1.0");
    }

    private static partial class DatabaseLog
    {
        [LoggerMessage(601, LogLevel.Warning, "The database's pool holds {PoolSize} connections (max_pool_size): at most {Concurrency} accounts are processed at once instead of REFRESH_MAX_CONCURRENCY={Requested}")]
        public static partial void PoolBoundsConcurrency(ILogger logger, int poolSize, int concurrency, int requested);

        [LoggerMessage(602, LogLevel.Warning, "The database server's certificate is not verified (sslmode={SslMode}), so a man in the middle could read the tokens: set sslmode=verify-full and sslrootcert to the provider's CA certificate in DATABASE_URL")]
        public static partial void ServerNotVerified(ILogger logger, string sslMode);
    }
}
