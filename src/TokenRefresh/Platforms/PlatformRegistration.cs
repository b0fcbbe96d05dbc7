using Microsoft.Extensions.DependencyInjection;
using Polly;
using TokenRefresh.Settings;

namespace TokenRefresh.Platforms;

/// <summary>
/// A platform's folder as <c>AddTokenRefresh</c> registers it, in one line: the settings it reads (by its prefix), the
/// command-line options that name its accounts, and its services. An optional platform that is not configured
/// registers nothing and does nothing.
/// </summary>
internal interface IPlatformRegistration
{
    IReadOnlyList<Setting> Settings { get; }

    IReadOnlyList<AccountOption> AccountOptions { get; }

    /// <summary>The main application's tables it uses, and how (scripts/sql/service-grants.sql is written from them).</summary>
    IReadOnlyList<Persistence.TableNeeds> Tables { get; }

    /// <exception cref="SettingsException">One of its settings is missing or malformed.</exception>
    void Register(IServiceCollection services, SettingsReader settings, CycleSettings cycle);
}

/// <summary>How every platform's typed HTTP client is made.</summary>
internal static class PlatformClients
{
    /// <summary>
    /// A typed client for one platform: no redirect followed, no framework HTTP logging, each call bounded by the
    /// HTTP timeout. Its connections are renewed every 5 minutes (PooledConnectionLifetime), so a platform that holds
    /// it for the life of the process still follows DNS.
    /// </summary>
    public static IHttpClientBuilder AddPlatformClient<TClient>(this IServiceCollection services, string name, Uri? baseAddress, TimeSpan timeout)
        where TClient : class
    {
        var client = services.AddHttpClient<TClient>(http => Configure(http, baseAddress))
            .ConfigurePrimaryHttpMessageHandler(PrimaryHandler)
            // No framework HTTP logging: its Trace header records carry the raw token and key headers in their structured
            // state even with RedactLoggedHeaders (caught by a test). Our own per-account lines say what each call did.
            .RemoveAllLoggers();
        client.AddResilienceHandler(name, pipeline => pipeline.AddTimeout(timeout));
        return client;
    }

    // Redirects are never followed: a 3xx is reported, and the token or secret goes nowhere else (CONTRACTS.md).
    public static SocketsHttpHandler PrimaryHandler() => new() { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(5) };

    private static void Configure(HttpClient http, Uri? baseAddress)
    {
        http.BaseAddress = baseAddress;
        // The resilience pipeline owns the timeout; a token response is small, anything bigger is not one.
        http.Timeout = Timeout.InfiniteTimeSpan;
        http.MaxResponseContentBufferSize = 1024 * 1024;
        http.DefaultRequestHeaders.UserAgent.ParseAdd("TokenRefresh/1.0");
    }
}
