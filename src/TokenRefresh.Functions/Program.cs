using Azure.Monitor.OpenTelemetry.Exporter;
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using TokenRefresh;
using TokenRefresh.Functions;
using TokenRefresh.Settings;

var builder = FunctionsApplication.CreateBuilder(args);
// Application Insights bills per trace: each account's success is at Debug here unless LOG_ACCOUNT_SUCCESS=true.
builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = [new("LOG_ACCOUNT_SUCCESS", "false")] });
WorkerTelemetry.Add(builder);
try
{
    builder.AddTokenRefresh();
    CycleSettings.Read(new SettingsReader(builder.Configuration)).RequireFunctionsSchedule();
}
catch (SettingsException e)
{
    // The host logs the worker's standard error: the same one line as the CLI, and no stack trace.
    Console.Error.WriteLine(e.Line);
    return 2;
}

// The service's metrics (meter "TokenRefresh") reach Application Insights as customMetrics, under the traces' role name.
if (!string.IsNullOrWhiteSpace(builder.Configuration[LoggingSettings.ApplicationInsightsSetting.Name]))
{
    builder.Services.AddOpenTelemetry()
        .ConfigureResource(resource => resource.AddService(TokenRefreshMetrics.ServiceName(builder.Configuration)))
        .WithMetrics(metrics => metrics.AddMeter(TokenRefreshMetrics.MeterName)
            .AddAzureMonitorMetricExporter(o => o.Credential = WorkerTelemetry.IngestionCredential(builder.Configuration)));
}

builder.Build().Run();
return 0;
