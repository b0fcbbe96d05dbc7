using Azure.Monitor.OpenTelemetry.Exporter;
using Microsoft.ApplicationInsights;
using Microsoft.ApplicationInsights.Channel;
using Microsoft.ApplicationInsights.Extensibility;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using TokenRefresh;

var builder = FunctionsApplication.CreateBuilder(args);
// Application Insights bills per trace: each account's success is at Debug here unless LOG_ACCOUNT_SUCCESS=true.
builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = [new("LOG_ACCOUNT_SUCCESS", "false")] });

var serviceName = TokenRefreshMetrics.ServiceName(builder.Configuration);
builder.Services.AddApplicationInsightsTelemetryWorkerService(options =>
{
    // The platform calls are not tracked one by one: tokenrefresh.platform.call.duration carries their latency.
    options.EnableDependencyTrackingTelemetryModule = false;
    // No sampling in the worker: what is left (the summary, failures, Critical) is small and none of it may be dropped.
    options.EnableAdaptiveSampling = false;
}).ConfigureFunctionsApplicationInsights();
builder.Services.AddSingleton<ITelemetryInitializer>(new RoleName(serviceName));
// The SDK sends every 30 s: a worker stopped or scaled in would lose its last cycle's summary without this.
builder.Services.AddHostedService<FlushTelemetryOnStop>();
// Application Insights keeps only Warning and above by default; the cycle summary is Information.
builder.Logging.Services.Configure<LoggerFilterOptions>(options =>
    options.Rules.Remove(options.Rules.FirstOrDefault(rule =>
        rule.ProviderName == "Microsoft.Extensions.Logging.ApplicationInsights.ApplicationInsightsLoggerProvider")!));
try
{
    builder.AddTokenRefresh();
    TokenRefreshOptions.Load(builder.Configuration).RequireFunctionsSchedule();
}
catch (SettingsException e)
{
    // The host logs the worker's standard error: the same one line as the CLI, and no stack trace.
    Console.Error.WriteLine(e.Line);
    return 2;
}

// The service's metrics (meter "TokenRefresh") reach Application Insights as customMetrics, under the traces' role name.
if (!string.IsNullOrWhiteSpace(builder.Configuration["APPLICATIONINSIGHTS_CONNECTION_STRING"]))
{
    builder.Services.AddOpenTelemetry()
        .ConfigureResource(resource => resource.AddService(serviceName))
        .WithMetrics(metrics => metrics.AddMeter(TokenRefreshMetrics.MeterName).AddAzureMonitorMetricExporter());
}

builder.Build().Run();
return 0;

internal sealed class FlushTelemetryOnStop(TelemetryClient telemetry) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => telemetry.FlushAsync(cancellationToken);
}

/// <summary>Every trace under one role name, the metrics' service.name, so that one filter finds both.</summary>
internal sealed class RoleName(string name) : ITelemetryInitializer
{
    public void Initialize(ITelemetry telemetry) => telemetry.Context.Cloud.RoleName = name;
}
