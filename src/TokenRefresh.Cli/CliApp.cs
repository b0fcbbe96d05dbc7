using System.Runtime.InteropServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Cli;

/// <summary>The standalone host: the same cycle as the Function app, for containers, cron jobs and laptops.</summary>
internal static partial class CliApp
{
    public const int Success = 0;
    public const int AccountsFailed = 1;
    public const int CannotRun = 2;

    private const string Usage = """
        Usage: tokenrefresh <command>

        Commands:
          once [--metrics] run one refresh cycle and exit (0: all accounts fine, 1: some failed, 2: could not run)
          run [--metrics]  run a cycle now and then on REFRESH_SCHEDULE until Ctrl+C or SIGTERM
                           (--metrics: print the service's metrics after each cycle)
          refresh (--etsy-user ID | --shop DOMAIN)
                           refresh (through the same claim and lease) or validate one account now, due or not
          migrate          create or upgrade the service's own table (idempotent)
          status [--json]  accounts due, fine lately, backing off and needing re-authorisation
          shopify migrate-expiring (--shop DOMAIN | --all) [--dry-run | --yes]
                           exchange stores' non-expiring Shopify tokens for expiring ones (irreversible)

        Settings come from environment variables, and from a .env file in the working directory.
        """;

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr)
    {
        // A command written out whole (Railway's pre-deploy `tokenrefresh migrate`, `docker run IMAGE tokenrefresh status`)
        // may reach the image's ENTRYPOINT, which is tokenrefresh, as its arguments: the program's own name is dropped.
        if (args is ["tokenrefresh", .. var rest])
        {
            args = rest;
        }

        var migrateExpiring = args is ["shopify", "migrate-expiring", ..] ? MigrateExpiringCommand.Parse(args[2..]) : null;
        if (args is ["shopify", "migrate-expiring", ..] && migrateExpiring is null)
        {
            stderr.WriteLine(MigrateExpiringCommand.Usage);
            return CannotRun;
        }

        var printMetrics = args is ["once" or "run", "--metrics"];
        if (printMetrics)
        {
            args = args[..1];
        }

        var force = args switch
        {
            ["refresh", "--etsy-user", var id] => ("etsy-user", id),
            ["refresh", "--shop", var shop] => ("shop", shop),
            _ => ((string Kind, string Key)?)null,
        };
        if (args is ["refresh", ..] && force is null)
        {
            stderr.WriteLine("Usage: tokenrefresh refresh (--etsy-user ID | --shop DOMAIN)");
            return CannotRun;
        }

        if (migrateExpiring is null && force is null && args is not (["once" or "run" or "migrate" or "status"] or ["status", "--json"]))
        {
            var help = args is ["help" or "--help" or "-h"];
            (help ? stdout : stderr).WriteLine(Usage);
            return help ? Success : CannotRun;
        }

        using var stop = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

        IHost host;
        try
        {
            // The operations commands print their own results on stdout alone; their logs go to stderr.
            host = BuildHost(logToStandardError: args[0] is "status" or "migrate" or "shopify" or "refresh");
        }
        catch (SettingsException e)
        {
            stderr.WriteLine(e.Line);
            return CannotRun;
        }

        using var metrics = printMetrics ? new MetricsPrinter() : null;
        using (host)
        {
            // Built now, so that metrics are exported over OTLP when an endpoint is configured; disposing it flushes them.
            host.Services.GetService<OpenTelemetry.Metrics.MeterProvider>();
            return args switch
            {
                ["once"] => await OnceAsync(host.Services, metrics is null ? null : () => metrics.Print(stdout), stop.Token),
                ["run"] => await RunScheduledAsync(host.Services, metrics is null ? null : () => metrics.Print(stdout), stop.Token),
                ["migrate"] => await MigrateAsync(host.Services, stdout, stop.Token),
                ["shopify", ..] => await MigrateExpiringCommand.RunAsync(host.Services, migrateExpiring!.Value, stdout, stderr, stop.Token),
                ["refresh", ..] => await ForceAsync(host.Services, force!.Value, stdout, stderr, stop.Token),
                _ => await StatusAsync(host.Services, stdout, stderr, json: args.Length == 2, stop.Token),
            };
        }

        void Stop(PosixSignalContext context)
        {
            // Stop claiming accounts; the ones in flight finish and are stored before the process exits.
            context.Cancel = true;
            stop.Cancel();
        }
    }

    internal static IHost BuildHost(bool logToStandardError = false)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        // The process environment wins over .env, as with the original service.
        builder.Configuration.AddInMemoryCollection(DotEnv.Read(Path.Combine(Environment.CurrentDirectory, ".env")));
        builder.Configuration.AddEnvironmentVariables();
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = logToStandardError ? LogLevel.Trace : LogLevel.None)
            .AddConsoleFormatter<CliConsoleFormatter, ConsoleFormatterOptions>();
        // LOG_FORMAT=json: the built-in JSON formatter, one object per line, with the account's scope (Platform, AccountId).
        builder.Services.AddOptions<ConsoleLoggerOptions>().Configure<IOptions<TokenRefreshOptions>>((o, options) =>
            o.FormatterName = options.Value.JsonLogs ? ConsoleFormatterNames.Json : CliConsoleFormatter.FormatterName);
        builder.Services.Configure<JsonConsoleFormatterOptions>(o =>
        {
            o.IncludeScopes = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
        });
        builder.AddTokenRefresh();
        return builder.Build();
    }

    private static async Task<int> OnceAsync(IServiceProvider services, Action? afterCycle, CancellationToken stopping)
    {
        try
        {
            var summary = await services.GetRequiredService<RefreshCycle>().RunAsync(stopping);
            return summary.AnyFailed ? AccountsFailed : Success;
        }
        catch (CycleFailedException)
        {
            // Already logged with its stack trace by the cycle.
            return CannotRun;
        }
        finally
        {
            afterCycle?.Invoke();
        }
    }

    internal static async Task<int> RunScheduledAsync(IServiceProvider services, Action? afterCycle, CancellationToken stopping)
    {
        var time = services.GetRequiredService<TimeProvider>();
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Cli");
        var schedule = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<TokenRefreshOptions>>().Value;
        if (schedule.RefreshInterval is { } interval && !schedule.RefreshScheduleSet)
        {
            Log.StartedWithInterval(logger, interval.TotalMinutes);
        }
        else
        {
            Log.Started(logger, schedule.RefreshSchedule);
        }

        while (!stopping.IsCancellationRequested)
        {
            DateTimeOffset next;
            var started = time.GetUtcNow();
            try
            {
                await services.GetRequiredService<RefreshCycle>().RunAsync(stopping);
                // REFRESH_INTERVAL_MINUTES alone, as the original ran: every N minutes from the start of the last cycle.
                next = schedule.RefreshInterval is { } every && !schedule.RefreshScheduleSet
                    ? started + every
                    : new DateTimeOffset(schedule.Schedule.GetNextOccurrence(time.GetUtcNow().UtcDateTime), TimeSpan.Zero);
            }
            catch (CycleFailedException)
            {
                next = time.GetUtcNow() + TokenRefreshOptions.CycleRetryDelay;
                Log.Retrying(logger, TokenRefreshOptions.CycleRetryDelay.TotalSeconds);
            }

            afterCycle?.Invoke();

            Log.NextCycle(logger, next);
            try
            {
                // The wait is measured from now, so however long the log line took, the cycle starts at `next`.
                await Task.Delay(Max(next - time.GetUtcNow(), TimeSpan.Zero), time, stopping);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        Log.Stopped(logger);
        return Success;
    }

    private static async Task<int> MigrateAsync(IServiceProvider services, TextWriter stdout, CancellationToken cancellationToken)
    {
        try
        {
            var applied = await Migrator.ApplyAsync(services.GetRequiredService<NpgsqlDataSource>(), cancellationToken);
            stdout.WriteLine(applied.Count == 0
                ? "The service's table is up to date; nothing to apply."
                : $"Applied: {string.Join(", ", applied)}");
            return Success;
        }
        catch (NpgsqlException e)
        {
            Log.CommandFailed(services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Cli"), e, "migrate");
            return CannotRun;
        }
    }

    private static async Task<int> StatusAsync(IServiceProvider services, TextWriter stdout, TextWriter stderr, bool json, CancellationToken cancellationToken)
    {
        try
        {
            var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
            var status = await services.GetRequiredService<StatusReader>().ReadAsync(cancellationToken);
            if (json)
            {
                StatusCommand.WriteJson(stdout, now, status);
            }
            else
            {
                StatusCommand.WriteTable(stdout, now, status);
            }

            return Success;
        }
        catch (NpgsqlException e)
        {
            Log.CommandFailed(services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Cli"), e, "status");
            return CannotRun;
        }
        catch (SchemaException e)
        {
            stderr.WriteLine(e.Message);
            return CannotRun;
        }
    }

    private static async Task<int> ForceAsync(
        IServiceProvider services, (string Kind, string Key) account, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        try
        {
            if (await services.GetRequiredService<RefreshCycle>().ForceAsync(account.Kind, account.Key, cancellationToken) is not { } done)
            {
                stderr.WriteLine(account.Kind == "shop"
                    ? $"No active Shopify store with shop_domain {account.Key}."
                    : $"No Etsy user {account.Key} with a refresh token.");
                return CannotRun;
            }

            var (platform, target, result) = done;
            stdout.WriteLine(result.Reason is null
                ? $"{platform} {target}: {result.Outcome.ToString().ToLowerInvariant()}"
                : $"{platform} {target}: {result.Outcome.ToString().ToLowerInvariant()} ({result.Reason})");
            return result.Outcome is Outcome.Failed or Outcome.Skipped ? AccountsFailed : Success;
        }
        catch (NpgsqlException e)
        {
            Log.CommandFailed(services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Cli"), e, "refresh");
            return CannotRun;
        }
        catch (SchemaException e)
        {
            stderr.WriteLine(e.Message);
            return CannotRun;
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static partial class Log
    {
        [LoggerMessage(201, LogLevel.Information, "Running on schedule '{Schedule}' (UTC); Ctrl+C or SIGTERM stops")]
        public static partial void Started(ILogger logger, string schedule);

        [LoggerMessage(206, LogLevel.Information, "Running a cycle now and then every {Minutes} minutes (REFRESH_INTERVAL_MINUTES); Ctrl+C or SIGTERM stops")]
        public static partial void StartedWithInterval(ILogger logger, double minutes);

        [LoggerMessage(202, LogLevel.Warning, "The cycle failed; trying again in {Seconds} s")]
        public static partial void Retrying(ILogger logger, double seconds);

        [LoggerMessage(204, LogLevel.Information, "Next cycle at {Next:yyyy-MM-dd HH:mm:ss} UTC")]
        public static partial void NextCycle(ILogger logger, DateTimeOffset next);

        [LoggerMessage(205, LogLevel.Error, "{Command} failed: the database could not be used")]
        public static partial void CommandFailed(ILogger logger, Exception exception, string command);

        [LoggerMessage(203, LogLevel.Information, "Stopped")]
        public static partial void Stopped(ILogger logger);
    }
}
