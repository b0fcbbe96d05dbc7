using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using NSubstitute;
using TokenRefresh.Cli;
using TokenRefresh.Cli.Commands;

namespace TokenRefresh.Tests;

public sealed class CliRunLoopTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 27, 12, 0, 30, TimeSpan.Zero));
    private int _cycles;

    private ServiceProvider Services(TimeSpan? interval = null, Action<IPlatformCycle>? setup = null, int maxConcurrency = 10)
    {
        var work = Substitute.For<IPlatformCycle>();
        work.CountDueAsync(Arg.Any<CancellationToken>()).Returns(_ => Interlocked.Increment(ref _cycles) == 1
            ? throw new TimeoutException("database unreachable")
            : Task.FromResult(0));
        work.NextAsync(Arg.Any<int>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns([]);
        work.FinishAsync().Returns([]);
        setup?.Invoke(work);
        var platform = Substitute.For<IPlatform>();
        platform.Info.Returns(new PlatformInfo("etsy", "Etsy", "Etsy", null, Outcome.Refreshed, new AccountOption("etsy-user", "ID", "an Etsy user", "no user {0}")));
        platform.StartCycleAsync(Arg.Any<CancellationToken>()).Returns(work);
        var cycle = new CycleSettings { RefreshSchedule = "0 */3 * * * *", RefreshScheduleSet = interval is null, RefreshInterval = interval, MaxConcurrency = maxConcurrency };
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

    [Fact]
    public async Task RunScheduled_BudgetSpentWithAccountsLeft_StartsTheNextCycleAtOnce()
    {
        var left = new Queue<DueAccount>(Enumerable.Range(0, 3).Select(_ => new DueAccount(Guid.NewGuid().ToString())));
        // One account at a time, so that the two after the first are still unclaimed when the budget runs out.
        using var services = Services(maxConcurrency: 1, setup: work =>
        {
            var permits = Substitute.For<IPermits>();
            permits.TryTake(Arg.Any<TimeSpan>()).Returns(TimeSpan.Zero);
            permits.Clock.Returns(TimeProvider.System);
            work.Permits.Returns(permits);
            var handed = new Queue<DueAccount>();
            work.CountDueAsync(Arg.Any<CancellationToken>()).Returns(_ =>
            {
                Interlocked.Increment(ref _cycles);
                handed = new Queue<DueAccount>(left);
                return Task.FromResult(left.Count);
            });
            work.NextAsync(Arg.Any<int>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>())
                .Returns(ci => (IReadOnlyList<DueAccount>)[.. Enumerable.Range(0, Math.Min(ci.Arg<int>(), handed.Count)).Select(_ => handed.Dequeue())]);
            // The first account takes longer than the budget (120 s): the other two are left, a backlog.
            work.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(_ =>
            {
                if (left.Count == 3)
                {
                    _time.Advance(TimeSpan.FromSeconds(121));
                }

                left.Dequeue();
                return AccountResult.Success(Outcome.Refreshed);
            });
        });
        var logs = services.GetFakeLogCollector();
        using var stop = new CancellationTokenSource();
        var loop = RunCommand.RunScheduledAsync(services, afterCycle: null, stop.Token);

        // 12:02:31, the budget spent: the second cycle runs with no time passing, and then the schedule's next slot.
        await WaitForLogAsync(logs, "Next cycle at 2026-11-27 12:03:00 UTC");

        stop.Cancel();
        Assert.Equal(0, await loop.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(2, Volatile.Read(ref _cycles));
        Assert.Empty(left);
        Assert.Single(logs.GetSnapshot(), r => r.Message == "The cycle's budget ran out with accounts left; the next cycle starts now");
    }

    [Fact]
    public async Task RunScheduled_EveryCycleFails_ExitsThreeOnceTheHeartbeatsDeadlinePasses()
    {
        using var services = Services(setup: work => work.CountDueAsync(Arg.Any<CancellationToken>()).Returns<int>(_ =>
        {
            Interlocked.Increment(ref _cycles);
            throw new TimeoutException("database unreachable");
        }));
        var logs = services.GetFakeLogCollector();
        var deadline = Heartbeat.StaleAfter(services.GetRequiredService<CycleSettings>(), _time.GetUtcNow());
        var loop = RunCommand.RunScheduledAsync(services, afterCycle: null, CancellationToken.None);

        // A failed cycle every 60 s: none ran, and once the deadline has passed the process exits to be started again.
        while (!loop.IsCompleted && _time.GetUtcNow() <= deadline)
        {
            await WaitForLogAsync(logs, $"Next cycle at {_time.GetUtcNow().AddSeconds(60):yyyy-MM-dd HH:mm:ss} UTC");
            _time.Advance(TimeSpan.FromSeconds(60));
        }

        Assert.Equal(CliApp.Stuck, await loop.WaitAsync(TimeSpan.FromSeconds(10)));
        var line = Assert.Single(logs.GetSnapshot(), r => r.Level == LogLevel.Critical);
        Assert.Equal($"No cycle has run by {deadline:yyyy-MM-dd HH:mm:ss} UTC, the heartbeat's deadline (a cycle hangs, or the database stays unreachable): exiting with code 3 so that the process is started again", line.Message);
        Assert.True(Volatile.Read(ref _cycles) > 3);
    }

    [Fact]
    public async Task RunScheduled_CycleHangs_ExitsThreeAtTheDeadline_NotBefore()
    {
        var hang = new TaskCompletionSource<int>();
        using var services = Services(setup: work => work.CountDueAsync(Arg.Any<CancellationToken>()).Returns(_ => hang.Task));
        var logs = services.GetFakeLogCollector();
        var deadline = Heartbeat.StaleAfter(services.GetRequiredService<CycleSettings>(), _time.GetUtcNow());
        var loop = RunCommand.RunScheduledAsync(services, afterCycle: null, CancellationToken.None);
        await WaitForLogAsync(logs, "Refresh cycle started");

        _time.Advance(deadline - _time.GetUtcNow() - TimeSpan.FromSeconds(1));
        Assert.False(loop.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(CliApp.Stuck, await loop.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains(logs.GetSnapshot(), r => r.Level == LogLevel.Critical && r.Message.StartsWith("No cycle has run by", StringComparison.Ordinal));
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
