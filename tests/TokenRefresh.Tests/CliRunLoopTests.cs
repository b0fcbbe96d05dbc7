using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using NSubstitute;
using TokenRefresh.Cli.Commands;

namespace TokenRefresh.Tests;

public sealed class CliRunLoopTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 27, 12, 0, 30, TimeSpan.Zero));
    private int _cycles;

    private ServiceProvider Services(TimeSpan? interval = null)
    {
        var work = Substitute.For<IPlatformCycle>();
        work.CountDueAsync(Arg.Any<CancellationToken>()).Returns(_ => Interlocked.Increment(ref _cycles) == 1
            ? throw new TimeoutException("database unreachable")
            : Task.FromResult(0));
        work.FindDueAsync(Arg.Any<CancellationToken>()).Returns(_ => AsyncEnumerable.Empty<DueAccount>());
        work.FinishAsync().Returns([]);
        var platform = Substitute.For<IPlatform>();
        platform.Info.Returns(new PlatformInfo("etsy", "Etsy", "Etsy", null, Outcome.Refreshed, new AccountOption("etsy-user", "ID", "an Etsy user", "no user {0}")));
        platform.StartCycleAsync(Arg.Any<CancellationToken>()).Returns(work);
        var cycle = new CycleSettings { RefreshSchedule = "0 */3 * * * *", RefreshScheduleSet = interval is null, RefreshInterval = interval };
        return new ServiceCollection()
            .AddSingleton<TimeProvider>(_time)
            .AddSingleton(platform)
            .AddSingleton(cycle)
            .AddSingleton(new LoggingSettings())
            .AddSingleton(sp => new RefreshCycle(sp.GetServices<IPlatform>(), cycle, new LoggingSettings(), _time, sp.GetRequiredService<TokenRefreshMetrics>(),
                sp.GetRequiredService<PlatformHealthRegistry>(), sp.GetRequiredService<ReauthWebhook>(), sp.GetRequiredService<ILogger<RefreshCycle>>()))
            // No REAUTH_WEBHOOK_URL: it sends nothing.
            .AddSingleton(_ => new ReauthWebhook(new HttpClient(), new WebhookSettings(null, null), _time,
                Microsoft.Extensions.Logging.Abstractions.NullLogger<ReauthWebhook>.Instance))
            .AddSingleton<PlatformHealthRegistry>()
            .AddMetrics()
            .AddSingleton<TokenRefreshMetrics>()
            .AddLogging(b => b.AddFakeLogging())
            .BuildServiceProvider();
    }

    [Fact]
    public async Task RunScheduled_CycleFails_TriesAgainAfterSixtySecondsThenFollowsTheSchedule()
    {
        using var services = Services();
        var logs = services.GetFakeLogCollector();
        using var stop = new CancellationTokenSource();
        var loop = RunCommand.RunScheduledAsync(services, afterCycle: null, stop.Token);

        // 12:00:30: the first cycle fails, the retry is due at 12:01:30.
        await WaitForLogAsync(logs, "Next cycle at 2026-11-27 12:01:30 UTC");
        _time.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(1, Volatile.Read(ref _cycles));
        _time.Advance(TimeSpan.FromSeconds(1));

        // 12:01:30: the retry succeeds; the schedule's next slot is 12:03:00.
        await WaitForLogAsync(logs, "Next cycle at 2026-11-27 12:03:00 UTC");
        Assert.Equal(2, Volatile.Read(ref _cycles));
        _time.Advance(TimeSpan.FromSeconds(89));
        Assert.Equal(2, Volatile.Read(ref _cycles));
        _time.Advance(TimeSpan.FromSeconds(1));
        await WaitForLogAsync(logs, "Next cycle at 2026-11-27 12:06:00 UTC");

        stop.Cancel();
        Assert.Equal(0, await loop.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(3, Volatile.Read(ref _cycles));
        Assert.Contains(logs.GetSnapshot(), r => r.Message == "The cycle failed; trying again in 60 s");
        Assert.Equal("Stopped", logs.LatestRecord.Message);
    }

    [Fact]
    public async Task RunScheduled_RefreshIntervalMinutes_RunsNowThenEveryNMinutesFromEachStart()
    {
        using var services = Services(TimeSpan.FromMinutes(7));
        var logs = services.GetFakeLogCollector();
        using var stop = new CancellationTokenSource();
        var loop = RunCommand.RunScheduledAsync(services, afterCycle: null, stop.Token);

        // 12:00:30: the first cycle fails (60 s retry), then 12:01:30 runs, then every 7 minutes from its start.
        await WaitForLogAsync(logs, "Next cycle at 2026-11-27 12:01:30 UTC");
        _time.Advance(TimeSpan.FromSeconds(60));
        await WaitForLogAsync(logs, "Next cycle at 2026-11-27 12:08:30 UTC");
        _time.Advance(TimeSpan.FromMinutes(7));
        await WaitForLogAsync(logs, "Next cycle at 2026-11-27 12:15:30 UTC");

        stop.Cancel();
        Assert.Equal(0, await loop.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(3, Volatile.Read(ref _cycles));
        Assert.Contains(logs.GetSnapshot(), r => r.Message == "Running a cycle now and then every 7 minutes (REFRESH_INTERVAL_MINUTES); Ctrl+C or SIGTERM stops");
    }

    private static async Task WaitForLogAsync(FakeLogCollector logs, string message)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!logs.GetSnapshot().Any(r => r.Message == message))
        {
            await Task.Delay(5, timeout.Token);
        }
    }
}
