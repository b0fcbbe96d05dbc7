using System.CommandLine;
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

    /// <summary>
    /// Runs one command. Usage errors and settings errors exit 2 with one line each on standard error; help and
    /// --version print on standard output and exit 0.
    /// </summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr)
    {
        // A command written out whole (Railway's pre-deploy `tokenrefresh migrate`, `docker run IMAGE tokenrefresh status`)
        // may reach the image's ENTRYPOINT, which is tokenrefresh, as its arguments: the program's own name is dropped.
        if (args is ["tokenrefresh", .. var rest])
        {
            args = rest;
        }

        // `tokenrefresh help [COMMAND...]`, as the CLI took it before.
        if (args is ["help", .. var topic])
        {
            args = [.. topic, "--help"];
        }

        var parsed = Commands(stdout, stderr).Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                stderr.WriteLine(error.Message);
            }

            stderr.WriteLine($"Run '{CommandPath(parsed)} --help' for usage.");
            return CannotRun;
        }

        // No termination timeout: SIGINT and SIGTERM are ours (WithHostAsync), so the calls in flight finish and their
        // pairs are stored; System.CommandLine would end the process two seconds later.
        try
        {
            return await parsed.InvokeAsync(new InvocationConfiguration
            {
                Output = stdout, Error = stderr, ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false,
            });
        }
        catch (Exception e)
        {
            // Could not run, whatever went wrong (exit 1 means accounts failed): the exception with its stack trace.
            stderr.WriteLine($"tokenrefresh: unexpected error: {e}");
            return CannotRun;
        }
    }

    private static RootCommand Commands(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand(
            "TokenRefresh keeps Etsy and Shopify OAuth tokens alive in the main application's PostgreSQL database.\n" +
            "Settings come from environment variables, and from a .env file in the working directory.\n" +
            "Exit codes: 0 all fine, 1 some accounts failed (or the heartbeat is stale), 2 could not run (usage, settings, database).")
        {
            // The image's command name, whatever the file is called (TokenRefresh.Cli, or dotnet TokenRefresh.Cli.dll).
            HelpName = "tokenrefresh",
        };

        var onceMetrics = new Option<bool>("--metrics") { Description = "Print the service's metrics after the cycle" };
        var once = new Command("once", "Run one refresh cycle and exit (0: all accounts fine, 1: some failed, 2: could not run)") { onceMetrics };
        once.SetAction((parse, _) => WithHostAsync(stdout, stderr, logToStandardError: false, parse.GetValue(onceMetrics), OnceAsync));

        var runMetrics = new Option<bool>("--metrics") { Description = "Print the service's metrics after each cycle" };
        var run = new Command("run", "Run a cycle now and then on REFRESH_SCHEDULE until Ctrl+C or SIGTERM (HEARTBEAT_FILE: touched after each cycle)") { runMetrics };
        run.SetAction((parse, _) => WithHostAsync(stdout, stderr, logToStandardError: false, parse.GetValue(runMetrics), RunScheduledAsync));

        var etsyUser = new Option<string>("--etsy-user") { Description = "The Etsy user's id (etsy_users key)", HelpName = "ID" };
        var shop = new Option<string>("--shop") { Description = "The store's shop_domain", HelpName = "DOMAIN" };
        var refresh = new Command("refresh", "Refresh (through the same claim and lease) or validate one account now, due or not") { etsyUser, shop };
        refresh.Validators.Add(result =>
        {
            if ((result.GetResult(etsyUser) is null) == (result.GetResult(shop) is null))
            {
                result.AddError("Give exactly one of --etsy-user ID or --shop DOMAIN.");
            }
        });
        refresh.SetAction((parse, _) => WithHostAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) =>
            ForceAsync(services, parse.GetValue(shop) is { } domain ? ("shop", domain) : ("etsy-user", parse.GetValue(etsyUser)!), stdout, stderr, stop)));

        var migrate = new Command("migrate", "Create or upgrade the service's own tables (idempotent)");
        migrate.SetAction((_, _) => WithHostAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) => MigrateAsync(services, stdout, stop)));

        var json = new Option<bool>("--json") { Description = "One JSON document instead of the table" };
        var status = new Command("status", "Accounts due, fine lately, backing off and needing re-authorisation") { json };
        status.SetAction((parse, _) => WithHostAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) =>
            StatusAsync(services, stdout, stderr, parse.GetValue(json), stop)));

        var health = new Command("health", "Exit 0 if `run` completed a cycle recently enough (HEARTBEAT_FILE), 1 if not: the image's HEALTHCHECK");
        health.SetAction(_ => Heartbeat.Check(stdout, stderr));

        var migrateShop = new Option<string>("--shop") { Description = "One store's shop_domain", HelpName = "DOMAIN" };
        var all = new Option<bool>("--all") { Description = "Every active store with a non-expiring token" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Say what would be migrated (the default without --yes)" };
        var yes = new Option<bool>("--yes") { Description = "Migrate: irreversible, the old token stops working" };
        var migrateExpiring = new Command("migrate-expiring", "Exchange stores' non-expiring Shopify tokens for expiring ones (irreversible)")
        {
            migrateShop, all, dryRun, yes,
        };
        migrateExpiring.Validators.Add(result =>
        {
            if ((result.GetResult(migrateShop) is null) != result.GetValue(all))
            {
                result.AddError("Give exactly one of --shop DOMAIN or --all.");
            }

            if (result.GetValue(dryRun) && result.GetValue(yes))
            {
                result.AddError("Give at most one of --dry-run or --yes.");
            }
        });
        migrateExpiring.SetAction((parse, _) => WithHostAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) =>
            MigrateExpiringCommand.RunAsync(services, (parse.GetValue(migrateShop), parse.GetValue(dryRun), parse.GetValue(yes)), stdout, stderr, stop)));
        var shopify = new Command("shopify", "Shopify operations") { migrateExpiring };

        root.Subcommands.Add(once);
        root.Subcommands.Add(run);
        root.Subcommands.Add(refresh);
        root.Subcommands.Add(migrate);
        root.Subcommands.Add(status);
        root.Subcommands.Add(health);
        root.Subcommands.Add(shopify);
        return root;
    }

    private static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
        {
            names.Insert(0, result.Command is RootCommand ? "tokenrefresh" : result.Command.Name);
        }

        return string.Join(' ', names);
    }

    /// <summary>
    /// Builds the host from the settings (a bad one: its line, exit 2) and runs the command until it ends or a signal
    /// stops it; with <paramref name="metrics"/>, the command is given what prints them on standard output after a cycle.
    /// </summary>
    private static async Task<int> WithHostAsync(
        TextWriter stdout, TextWriter stderr, bool logToStandardError, bool metrics, Func<IServiceProvider, Action?, CancellationToken, Task<int>> command)
    {
        using var stop = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

        IHost host;
        try
        {
            // The operations commands print their own results on stdout alone; their logs go to stderr.
            host = BuildHost(logToStandardError);
        }
        catch (SettingsException e)
        {
            stderr.WriteLine(e.Line);
            return CannotRun;
        }

        using var printer = metrics ? new MetricsPrinter() : null;
        using (host)
        {
            // Built now, so that metrics are exported over OTLP when an endpoint is configured; disposing it flushes them.
            host.Services.GetService<OpenTelemetry.Metrics.MeterProvider>();
            return await command(host.Services, printer is null ? null : () => printer.Print(stdout), stop.Token);
        }

        void Stop(PosixSignalContext context)
        {
            // Stop claiming accounts; the ones in flight finish and are stored before the process exits.
            context.Cancel = true;
            stop.Cancel();
        }
    }

    /// <summary>The CLI's settings: a .env file in the working directory, and the process environment, which wins over it (as with the original service).</summary>
    internal static IConfigurationBuilder AddSettings(IConfigurationBuilder configuration) =>
        configuration.AddInMemoryCollection(DotEnv.Read(Path.Combine(Environment.CurrentDirectory, ".env"))).AddEnvironmentVariables();

    internal static IHost BuildHost(bool logToStandardError = false)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        AddSettings(builder.Configuration);
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

        // The first cycle starts now; a check before it ends finds the process healthy.
        WriteHeartbeat(time.GetUtcNow(), "starting");
        while (!stopping.IsCancellationRequested)
        {
            DateTimeOffset next;
            var started = time.GetUtcNow();
            try
            {
                var summary = await services.GetRequiredService<RefreshCycle>().RunAsync(stopping);
                // REFRESH_INTERVAL_MINUTES alone, as the original ran: every N minutes from the start of the last cycle.
                next = schedule.RefreshInterval is { } every && !schedule.RefreshScheduleSet
                    ? started + every
                    : new DateTimeOffset(schedule.Schedule.GetNextOccurrence(time.GetUtcNow().UtcDateTime), TimeSpan.Zero);
                WriteHeartbeat(next, $"last cycle: {summary}");
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

        void WriteHeartbeat(DateTimeOffset next, string lastCycle)
        {
            try
            {
                Heartbeat.Write(schedule, time.GetUtcNow(), next, lastCycle);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The refreshes matter more than the health check: say so, and go on.
                Log.HeartbeatNotWritten(logger, schedule.HeartbeatFile!, e.Message);
            }
        }
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

        [LoggerMessage(207, LogLevel.Warning, "The heartbeat could not be written to {Path} (HEARTBEAT_FILE): {Problem}")]
        public static partial void HeartbeatNotWritten(ILogger logger, string path, string problem);

        [LoggerMessage(203, LogLevel.Information, "Stopped")]
        public static partial void Stopped(ILogger logger);
    }
}
