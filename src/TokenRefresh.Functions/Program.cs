using Azure.Monitor.OpenTelemetry.Exporter;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using TokenRefresh;

var builder = FunctionsApplication.CreateBuilder(args);
builder.Services.AddApplicationInsightsTelemetryWorkerService().ConfigureFunctionsApplicationInsights();
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

// The service's metrics (meter "TokenRefresh") reach Application Insights as customMetrics.
if (!string.IsNullOrWhiteSpace(builder.Configuration["APPLICATIONINSIGHTS_CONNECTION_STRING"]))
{
    builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(TokenRefreshMetrics.MeterName).AddAzureMonitorMetricExporter());
}

builder.Build().Run();
return 0;
