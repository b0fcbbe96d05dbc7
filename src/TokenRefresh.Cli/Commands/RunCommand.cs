using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TokenRefresh.Settings;

namespace TokenRefresh.Cli.Commands;

/// <summary>`tokenrefresh run [--metrics]`: a cycle now, then on REFRESH_SCHEDULE (or every REFRESH_INTERVAL_MINUTES), until Ctrl+C or SIGTERM.</summary>
internal static partial class RunCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var metrics = new Option<bool>("--metrics") { Description = "Print the service's metrics after each cycle" };
        var run = new Command("run", "Run a cycle now and then on REFRESH_SCHEDULE until Ctrl+C or SIGTERM (HEARTBEAT_FILE: touched after each cycle)") { metrics };
        run.SetAction((parse, _) => CliHost.RunAsync(stdout, stderr, logToStandardError: false, parse.GetValue(metrics), RunScheduledAsync));
        return run;
    }

    internal static async Task<int> RunScheduledAsync(IServiceProvider services, Action? afterCycle, CancellationToken stopping)
    {
        var time = services.GetRequiredService<TimeProvider>();
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Cli");
        var schedule = services.GetRequiredService<CycleSettings>();
        if (schedule.RefreshInterval is { } interval && !schedule.RefreshScheduleSet)
        {
            Log.StartedWithInterval(logger, interval.TotalMinutes);
        }
        else
        {
            Log.Started(logger, schedule.RefreshSchedule);
        }

        // The first cycle starts now; a check before it ends finds the process healthy.
        var watchdog = new Watchdog(time, Heartbeat.StaleAfter(schedule, time.GetUtcNow()));
        WriteHeartbeat(time.GetUtcNow(), "starting");
        using var unwatched = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        var cycles = CyclesAsync();
        var stale = watchdog.StaleAsync(unwatched.Token);
        if (await Task.WhenAny(cycles, stale) == stale && stale.IsCompletedSuccessfully)
        {
            // Whatever holds the cycle is left as it is: the process ends, and its supervisor starts it again.
            Log.NoCycleRan(logger, stale.Result);
            return CliApp.Stuck;
        }

        await unwatched.CancelAsync();
        return await cycles;

        async Task<int> CyclesAsync()
        {
            var schemaChecked = false;
            while (!stopping.IsCancellationRequested)
            {
                DateTimeOffset next;
                var started = time.GetUtcNow();
                try
                {
                    // Until the database has answered it once (it may come up after this process).
                    schemaChecked = schemaChecked || await MigrateAtStart.TryAsync(services, logger, stopping);
                    var summary = await services.GetRequiredService<RefreshCycle>().RunAsync(stopping);
                    next = Next(summary, started);
                    WriteHeartbeat(next, $"last cycle: {summary}");
                }
                catch (CycleFailedException)
                {
                    next = time.GetUtcNow() + CycleSettings.RetryDelay;
                    Log.Retrying(logger, CycleSettings.RetryDelay.TotalSeconds);
                }

                afterCycle?.Invoke();

                Log.NextCycle(logger, next);
                try
                {
                    // The wait is measured from now, so however long the log line took, the cycle starts at `next`.
                    var wait = next - time.GetUtcNow();
                    await Task.Delay(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, time, stopping);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            Log.Stopped(logger);
            return CliApp.Success;
        }

        DateTimeOffset Next(CycleSummary summary, DateTimeOffset started)
        {
            if (summary.BudgetSpent)
            {
                // A backlog (after an outage, a first start): it goes on at the rate limit's pace, not a tick later.
                Log.BacklogContinues(logger);
                return time.GetUtcNow();
            }

            // REFRESH_INTERVAL_MINUTES alone, as the original ran: every N minutes from the start of the last cycle.
            return schedule.RefreshInterval is { } every && !schedule.RefreshScheduleSet
                ? started + every
                : new DateTimeOffset(schedule.Schedule.GetNextOccurrence(time.GetUtcNow().UtcDateTime), TimeSpan.Zero);
        }

        void WriteHeartbeat(DateTimeOffset next, string lastCycle)
        {
            watchdog.Expect(Heartbeat.StaleAfter(schedule, next));
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

    private static partial class Log
    {
        [LoggerMessage(201, LogLevel.Information, "Running on schedule '{Schedule}' (UTC); Ctrl+C or SIGTERM stops")]
        public static partial void Started(ILogger logger, string schedule);

        [LoggerMessage(206, LogLevel.Information, "Running a cycle now and then every {Minutes} minutes (REFRESH_INTERVAL_MINUTES); Ctrl+C or SIGTERM stops")]
        public static partial void StartedWithInterval(ILogger logger, double minutes);

        [LoggerMessage(202, LogLevel.Warning, "The cycle failed; trying again in {Seconds} s")]
        public static partial void Retrying(ILogger logger, double seconds);

        [LoggerMessage(208, LogLevel.Information, "The cycle's budget ran out with accounts left; the next cycle starts now")]
        public static partial void BacklogContinues(ILogger logger);

        [LoggerMessage(204, LogLevel.Information, "Next cycle at {Next:yyyy-MM-dd HH:mm:ss} UTC")]
        public static partial void NextCycle(ILogger logger, DateTimeOffset next);

        [LoggerMessage(207, LogLevel.Warning, "The heartbeat could not be written to {Path} (HEARTBEAT_FILE): {Problem}")]
        public static partial void HeartbeatNotWritten(ILogger logger, string path, string problem);

        [LoggerMessage(209, LogLevel.Critical, "No cycle has run by {Deadline:yyyy-MM-dd HH:mm:ss} UTC, the heartbeat's deadline (a cycle hangs, or the database stays unreachable): exiting with code 3 so that the process is started again")]
        public static partial void NoCycleRan(ILogger logger, DateTimeOffset deadline);

        [LoggerMessage(203, LogLevel.Information, "Stopped")]
        public static partial void Stopped(ILogger logger);
    }
}
