using Microsoft.ApplicationInsights;
using Microsoft.ApplicationInsights.Channel;
using Microsoft.ApplicationInsights.Extensibility;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Functions;

/// <summary>The worker's Application Insights: what it sends, and what it leaves out (docs/telemetry.md).</summary>
internal static class WorkerTelemetry
{
    public static void Add(IHostApplicationBuilder builder)
    {
        builder.Services.AddApplicationInsightsTelemetryWorkerService(options =>
        {
            // The platform calls are not tracked one by one: tokenrefresh.platform.call.duration carries their latency.
            options.EnableDependencyTrackingTelemetryModule = false;
            // No sampling in the worker: what is left (the summary, failures, Critical) is small and none of it may be dropped.
            options.EnableAdaptiveSampling = false;
        }).ConfigureFunctionsApplicationInsights();
        builder.Services.AddSingleton<ITelemetryInitializer>(new RoleName(TokenRefreshMetrics.ServiceName(builder.Configuration)));
        // The SDK sends every 30 s: a worker stopped or scaled in would lose its last cycle's summary without this.
        builder.Services.AddHostedService<FlushTelemetryOnStop>();
        // Application Insights keeps only Warning and above by default; the cycle summary is Information.
        builder.Logging.Services.Configure<LoggerFilterOptions>(options =>
            options.Rules.Remove(options.Rules.FirstOrDefault(rule =>
                rule.ProviderName == "Microsoft.Extensions.Logging.ApplicationInsights.ApplicationInsightsLoggerProvider")!));
    }

    /// <summary>
    /// With APPLICATIONINSIGHTS_AUTHENTICATION_STRING=ClientId=...;Authorization=AAD (Application Insights with local
    /// authentication off), the identity the metrics exporter sends as, as the worker's traces do; null otherwise.
    /// </summary>
    public static Azure.Core.TokenCredential? IngestionCredential(Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        var parts = (configuration["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0].Trim(), p => p[1].Trim(), StringComparer.OrdinalIgnoreCase);
        return parts.TryGetValue("Authorization", out var authorization) && authorization.Equals("AAD", StringComparison.OrdinalIgnoreCase)
            ? TokenRefreshExtensions.AzureCredential(parts.GetValueOrDefault("ClientId"))
            : null;
    }

    /// <summary>Every trace under one role name, the metrics' service.name, so that one filter finds both.</summary>
    internal sealed class RoleName(string name) : ITelemetryInitializer
    {
        public string Name => name;

        public void Initialize(ITelemetry telemetry) => telemetry.Context.Cloud.RoleName = name;
    }

    private sealed class FlushTelemetryOnStop(TelemetryClient telemetry, IHostApplicationLifetime lifetime) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            // Hosted services stop in reverse order, this one before the worker: the flush waits until the host has
            // stopped (ApplicationStopped), so it comes after an invocation still running at the stop.
            lifetime.ApplicationStopped.Register(() => telemetry.FlushAsync(CancellationToken.None).Wait(TimeSpan.FromSeconds(10)));
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
