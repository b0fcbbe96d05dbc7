using System.Runtime.InteropServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using TokenRefresh.Settings;

namespace TokenRefresh.Cli;

/// <summary>The CLI's own small host: its settings, its console logging, and the signals that stop a command.</summary>
internal static class CliHost
{
    /// <summary>
    /// Builds the host from the settings (a bad one: its line, exit 2) and runs the command until it ends or a signal
    /// stops it; with <paramref name="metrics"/>, the command is given what prints them on standard output after a cycle.
    /// </summary>
    public static async Task<int> RunAsync(
        TextWriter stdout, TextWriter stderr, bool logToStandardError, bool metrics, Func<IServiceProvider, Action?, CancellationToken, Task<int>> command)
    {
        using var stop = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

        IHost host;
        try
        {
            // The operations commands print their own results on stdout alone; their logs go to stderr.
            host = Build(logToStandardError);
        }
        catch (SettingsException e)
        {
            stderr.WriteLine(e.Line);
            return CliApp.CannotRun;
        }

        using var printer = metrics ? new MetricsPrinter() : null;
        // Built now, so that metrics are exported over OTLP when an endpoint is configured; disposing it flushes them.
        host.Services.GetService<OpenTelemetry.Metrics.MeterProvider>();
        var code = await command(host.Services, printer is null ? null : () => printer.Print(stdout), stop.Token);
        if (code != CliApp.Stuck)
        {
            // Not when stuck: disposing would wait for what holds the cycle.
            host.Dispose();
        }

        return code;

        void Stop(PosixSignalContext context)
        {
            // Stop claiming accounts; the ones in flight finish and are stored before the process exits.
            context.Cancel = true;
            stop.Cancel();
        }
    }

    /// <summary>The CLI's settings: a .env file in the working directory, and the process environment, which wins over it (as with the original service).</summary>
    public static IConfigurationBuilder AddSettings(IConfigurationBuilder configuration) =>
        configuration.AddInMemoryCollection(DotEnv.Read(Path.Combine(Environment.CurrentDirectory, ".env"))).AddEnvironmentVariables();

    public static IHost Build(bool logToStandardError = false)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        AddSettings(builder.Configuration);
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = logToStandardError ? LogLevel.Trace : LogLevel.None)
            .AddConsoleFormatter<CliConsoleFormatter, ConsoleFormatterOptions>();
        // LOG_FORMAT=json: the built-in JSON formatter, one object per line, with the account's scope (Platform, AccountId).
        builder.Services.AddOptions<ConsoleLoggerOptions>().Configure<LoggingSettings>((o, logging) =>
            o.FormatterName = logging.JsonLogs ? ConsoleFormatterNames.Json : CliConsoleFormatter.FormatterName);
        builder.Services.Configure<JsonConsoleFormatterOptions>(o =>
        {
            o.IncludeScopes = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
        });
        builder.AddTokenRefresh();
        return builder.Build();
    }
}
