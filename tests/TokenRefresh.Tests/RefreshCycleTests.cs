using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using NSubstitute;
using NSubstitute.ExceptionExtensions;

namespace TokenRefresh.Tests;

public sealed class RefreshCycleTests
{
    private readonly FakeLogger<RefreshCycle> _logger = new();

    // Each platform's part of the cycle (what the tests arrange and check), and the platform it belongs to.
    private readonly Dictionary<IPlatformCycle, IPlatform> _platforms = [];

    private IPlatformCycle Platform(string name, params DueAccount[] due)
    {
        var p = Substitute.For<IPlatformCycle>();
        var permits = Substitute.For<IPermits>();
        p.Permits.Returns(permits);
        permits.Clock.Returns(TimeProvider.System);
        // Each cycle counts the accounts, then is handed them as many at a time as it asks for.
        var left = new Queue<DueAccount>();
        p.CountDueAsync(Arg.Any<CancellationToken>()).Returns(_ =>
        {
            left = new Queue<DueAccount>(due);
            return due.Length;
        });
        p.NextAsync(Arg.Any<int>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>())
            .Returns(async ci =>
            {
                await Task.Yield();
                return (IReadOnlyList<DueAccount>)[.. Enumerable.Range(0, Math.Min(ci.Arg<int>(), left.Count)).Select(_ => left.Dequeue())];
            });
        permits.WaitAsync(Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(Task.FromResult<(string?, TimeSpan)>((null, default)));
        permits.TryTake(Arg.Any<TimeSpan>()).Returns(TimeSpan.Zero);
        p.ClaimAsync(Arg.Any<IReadOnlyList<DueAccount>>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>())
            .Returns(ci => (IReadOnlyList<Claim>)ci.Arg<IReadOnlyList<DueAccount>>().Select(a => new Claim(a)).ToList());
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(AccountResult.Success(Outcome.Refreshed));
        p.FinishAsync().Returns([]);
        var platform = Substitute.For<IPlatform>();
        platform.Info.Returns(new PlatformInfo(name.ToLowerInvariant(), name, name, _groupCaps.GetValueOrDefault(name) is > 0 and var cap ? cap : null,
            Outcome.Refreshed, new AccountOption("account", "ID", "an account", "no account {0}")));
        platform.StartCycleAsync(Arg.Any<CancellationToken>()).Returns(p);
        _platforms[p] = platform;
        return p;
    }

    private readonly FakeTimeProvider _time = new();
    private readonly PlatformHealthRegistry _health;

    public RefreshCycleTests() => _health = new PlatformHealthRegistry(_time, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
    private int _concurrency = 1;
    private Dictionary<string, int> _groupCaps = [];

    private RefreshCycle Cycle(params IPlatformCycle[] platforms)
    {
        var settings = new CycleSettings { CycleBudget = TimeSpan.FromSeconds(120), MaxConcurrency = _concurrency };
        // No REAUTH_WEBHOOK_URL: the webhook sends nothing.
        var webhook = new ReauthWebhook(new HttpClient(), new WebhookSettings(null, null), _time, Microsoft.Extensions.Logging.Abstractions.NullLogger<ReauthWebhook>.Instance);
        return new([.. platforms.Select(p => _platforms[p])], settings, new LoggingSettings(), _time,
            new TokenRefreshMetrics(new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>()), _health, webhook, _logger);
    }

    [Fact]
    public async Task RunAsync_OneAccountThrows_OthersStillRun()
    {
        var a = new DueAccount(Guid.NewGuid().ToString());
        var b = new DueAccount(Guid.NewGuid().ToString());
        var p = Platform("Etsy", a, b);
        p.ProcessAsync(a, Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).ThrowsAsync(new InvalidOperationException("boom"));

        var summary = await Cycle(p).RunAsync();

        Assert.Equal("Etsy: 1/2 refreshed, 1 failed", summary.ToString());
        await p.Received(1).ProcessAsync(b, Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        var crash = Assert.Single(_logger.Collector.GetSnapshot(), r => r.Exception is InvalidOperationException);
        Assert.Contains(a.Id.ToString(), crash.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunAsync_AccountWithProblem_IsSkippedWithAWarningAndNeverProcessed()
    {
        var bad = new DueAccount(Guid.NewGuid().ToString(), Problem: "token_expires_at is NULL");
        var p = Platform("Etsy", bad);

        var summary = await Cycle(p).RunAsync();

        Assert.Equal(1, summary.Platforms[0].Skipped);
        await p.DidNotReceive().ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Level == LogLevel.Warning && r.Message.Contains("token_expires_at is NULL", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RunAsync_DatabaseGoneMidCycle_ThatPlatformStopsAndCountsAsFailed_TheCycleDoesNotFail()
    {
        _concurrency = 2;
        var (first, second) = (new DueAccount("first"), new DueAccount("second"));
        var etsy = Platform("Etsy", first, second);
        // The first claim finds an account; the second meets the database restarting (after its own retries).
        etsy.NextAsync(Arg.Any<int>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>())
            .Returns(_ => Task.FromResult<IReadOnlyList<DueAccount>>([first]), _ => throw new Npgsql.NpgsqlException("the connection was closed"));
        var shopify = Platform("Shopify", new DueAccount(Guid.NewGuid().ToString()));

        var summary = await Cycle(etsy, shopify).RunAsync();

        // No CycleFailedException: `run` schedules the next cycle as usual, rather than a minute on.
        Assert.True(summary.Platforms[0].Crashed);
        Assert.Equal(1, summary.Platforms[0].Succeeded);
        Assert.Equal(1, summary.Platforms[0].LeftOver);
        Assert.True(summary.AnyFailed); // `once` exits 1
        Assert.Equal(1, summary.Platforms[1].Succeeded);
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Level == LogLevel.Error && r.Id.Id == 18 && r.Exception is Npgsql.NpgsqlException);
    }

    [Fact]
    public async Task RunAsync_PlatformCannotList_OtherPlatformsRunThenTheCycleFails()
    {
        var broken = Platform("Etsy");
        broken.CountDueAsync(Arg.Any<CancellationToken>()).ThrowsAsync(new TimeoutException("database unreachable"));
        var shopify = Platform("Shopify", new DueAccount(Guid.NewGuid().ToString()));

        var e = await Assert.ThrowsAsync<CycleFailedException>(() => Cycle(broken, shopify).RunAsync());

        Assert.IsType<TimeoutException>(e.InnerException);
        await shopify.Received(1).ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Level == LogLevel.Error && r.Exception is TimeoutException);
    }

    [Fact]
    public async Task RunAsync_StopRequested_ClaimsNoMoreAccountsAndSaysHowManyAreLeft()
    {
        using var stop = new CancellationTokenSource();
        var first = new DueAccount(Guid.NewGuid().ToString());
        var p = Platform("Etsy", first, new DueAccount(Guid.NewGuid().ToString()), new DueAccount(Guid.NewGuid().ToString()));
        p.ProcessAsync(first, Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(_ =>
        {
            stop.Cancel();
            return AccountResult.Success(Outcome.Refreshed);
        });

        var summary = await Cycle(p).RunAsync(stop.Token);

        Assert.Equal(1, summary.Platforms[0].Found);
        await p.Received(1).ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        Assert.Equal(2, summary.Platforms[0].LeftOver);
        Assert.False(summary.BudgetSpent); // left by a shutdown, not a backlog
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Message == "Etsy: shutting down, 2 accounts left for the next cycle");
    }

    [Fact]
    public async Task RunAsync_NoPermitWithinTheBudget_StopsClaimingForThatPlatformOnly_RestIsLeftOver()
    {
        var etsy = Platform("Etsy", new DueAccount(Guid.NewGuid().ToString()), new DueAccount(Guid.NewGuid().ToString()), new DueAccount(Guid.NewGuid().ToString()));
        etsy.Permits.TryTake(Arg.Any<TimeSpan>()).Returns((TimeSpan?)null);
        etsy.Permits.WaitAsync(Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(Task.FromResult<(string?, TimeSpan)>(("paused", default)));
        var shopify = Platform("Shopify", new DueAccount(Guid.NewGuid().ToString()), new DueAccount(Guid.NewGuid().ToString()));

        var summary = await Cycle(etsy, shopify).RunAsync();

        Assert.Equal("Etsy: 0/0 refreshed, 0 failed, 3 left for the next cycle", summary.Platforms[0].ToString());
        await etsy.DidNotReceive().NextAsync(Arg.Any<int>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        Assert.Equal(2, summary.Platforms[1].Succeeded);
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Message == "Etsy: paused, 3 accounts left for the next cycle");
    }

    [Fact]
    public async Task RunAsync_PlatformDown_OneProbeACycleWithoutTheOthers_ThenEveryoneAsSoonAsItAnswers()
    {
        var due = Enumerable.Range(0, 10).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray();
        var p = Platform("Etsy", due);
        var answering = false;
        var calls = 0;
        // As the refreshers do: every call's result goes to the platform's health.
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(_ =>
        {
            calls++;
            var result = answering ? AccountResult.Success(Outcome.Refreshed) : AccountResult.TransientFailure("server_error_503");
            _health.For("Etsy").Record(result.Reason);
            return result;
        });

        // The outage begins: Threshold failures in a row make it down, then one more account goes alone, as the probe.
        var first = await Cycle(p).RunAsync();
        Assert.Equal(PlatformHealth.Threshold + 1, calls);
        Assert.Equal(10 - calls, first.Platforms[0].LeftOver);
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Id.Id == 9 && r.Message.Contains("looks down", StringComparison.Ordinal));

        // While it lasts: one call a cycle.
        calls = 0;
        await Cycle(p).RunAsync();
        Assert.Equal(1, calls);

        // It answers again: the probe finds out, and every account goes in the same cycle.
        answering = true;
        calls = 0;
        var back = await Cycle(p).RunAsync();
        Assert.Equal(10, calls);
        Assert.Equal(10, back.Platforms[0].Succeeded);
        Assert.False(_health.For("Etsy").IsDown);
    }

    [Fact]
    public async Task RunAsync_PlatformDown_AProbeAnotherReplicaHolds_IsReplacedByTheNextAccount()
    {
        var due = Enumerable.Range(0, 6).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray();
        var p = Platform("Etsy", due);
        var health = _health.For("Etsy");
        for (var i = 0; i < PlatformHealth.Threshold; i++)
        {
            health.Record("server_error_500");
        }

        var calls = 0;
        // The first due account is leased by another replica (no call, nothing recorded); the platform answers again.
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(c =>
        {
            if (c.Arg<DueAccount>() == due[0])
            {
                return AccountResult.Skip("not claimed");
            }

            calls++;
            health.Record(null);
            return AccountResult.Success(Outcome.Refreshed);
        });

        var summary = await Cycle(p).RunAsync();

        // Had the skipped probe counted, this replica would have left the other five for the next cycle.
        Assert.Equal("Etsy: 5/6 refreshed, 0 failed, 1 skipped", summary.Platforms[0].ToString());
        Assert.Equal(5, calls);
        Assert.False(health.IsDown);
    }

    [Fact]
    public async Task RunAsync_AccountsOwnFailuresBetweenAnswers_NeverMakeThePlatformDown()
    {
        var due = Enumerable.Range(0, 12).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray();
        var p = Platform("Etsy", due);
        var calls = 0;
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(_ =>
        {
            // Four server errors, then an answer, and again: never Threshold in a row.
            var fails = ++calls % PlatformHealth.Threshold != 0;
            var result = fails ? AccountResult.TransientFailure("server_error_500") : AccountResult.PermanentFailure("invalid_grant");
            _health.For("Etsy").Record(result.Reason);
            return result;
        });

        await Cycle(p).RunAsync();

        Assert.Equal(12, calls);
        Assert.False(_health.For("Etsy").IsDown);
    }

    [Fact]
    public async Task RunAsync_Summary_IsOneEventWithNamedCounts()
    {
        var p = Platform("Etsy", new DueAccount(Guid.NewGuid().ToString()), new DueAccount(Guid.NewGuid().ToString()));
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>())
            .Returns(AccountResult.Success(Outcome.Refreshed), AccountResult.TransientFailure("timeout"));

        await Cycle(p).RunAsync();

        var summary = Assert.Single(_logger.Collector.GetSnapshot(), r => r.Id.Id == 10);
        Assert.Equal(LogLevel.Warning, summary.Level);
        Assert.Contains("Etsy: 1/2 refreshed, 1 failed", summary.Message, StringComparison.Ordinal);
        Assert.Equal("Etsy: 1/2 refreshed, 1 failed", summary.GetStructuredStateValue("Summary"));
        Assert.NotNull(summary.GetStructuredStateValue("DurationMs"));
        var scope = Assert.IsType<Dictionary<string, object>>(Assert.Single(summary.Scopes));
        Assert.Equal(2, scope["EtsyFound"]);
        Assert.Equal(1, scope["EtsyRefreshed"]);
        Assert.Equal(1, scope["EtsyFailed"]);
        Assert.Equal(1, scope["Failed"]);
    }

    [Fact]
    public async Task RunAsync_BudgetSpent_LeavesTheRestForTheNextCycleAndSaysSo()
    {
        var first = new DueAccount(Guid.NewGuid().ToString());
        var p = Platform("Etsy", first, new DueAccount(Guid.NewGuid().ToString()), new DueAccount(Guid.NewGuid().ToString()));
        DateTimeOffset deadline = default;
        p.ProcessAsync(first, Arg.Do<DateTimeOffset>(d => deadline = d), Arg.Any<CancellationToken>()).Returns(_ =>
        {
            _time.Advance(TimeSpan.FromSeconds(121));
            return AccountResult.Success(Outcome.Refreshed);
        });
        var start = _time.GetUtcNow();

        var summary = await Cycle(p).RunAsync();

        Assert.Equal(start + TimeSpan.FromSeconds(120), deadline);
        Assert.Equal("Etsy: 1/1 refreshed, 0 failed, 2 left for the next cycle", summary.Platforms[0].ToString());
        Assert.False(summary.AnyFailed);
        Assert.True(summary.BudgetSpent); // `run` goes on with the backlog at once
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Message == "Etsy: cycle budget spent, 2 accounts left for the next cycle");
    }

    [Fact]
    public async Task RunAsync_PlatformNotEnabled_IsLeftOutOfTheSummary()
    {
        var off = Platform("Shopify expiring", new DueAccount(Guid.NewGuid().ToString()));
        _platforms[off].StartCycleAsync(Arg.Any<CancellationToken>()).Returns((IPlatformCycle?)null);

        var summary = await Cycle(Platform("Etsy"), off).RunAsync();

        Assert.Equal("Etsy: 0/0 refreshed, 0 failed", summary.ToString());
        await off.DidNotReceive().CountDueAsync(Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task RunAsync_MaxConcurrency_BoundsAccountsInFlightAcrossAllPlatforms()
    {
        _concurrency = 4;
        var release = new TaskCompletionSource<AccountResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inFlight = 0;
        var peak = 0;
        var reachedFour = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        IPlatformCycle Busy(string name)
        {
            var p = Platform(name, Enumerable.Range(0, 10).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray());
            p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(async _ =>
            {
                var now = Interlocked.Increment(ref inFlight);
                InterlockedMax(ref peak, now);
                if (now == 4)
                {
                    reachedFour.TrySetResult();
                }

                var result = await release.Task;
                Interlocked.Decrement(ref inFlight);
                return result;
            });
            return p;
        }

        var run = Cycle(Busy("Etsy"), Busy("Shopify")).RunAsync();
        await reachedFour.Task.WaitAsync(TimeSpan.FromSeconds(10));
        release.SetResult(AccountResult.Success(Outcome.Refreshed));
        var summary = await run.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(4, peak);
        Assert.Equal(20, summary.Platforms.Sum(p => p.Succeeded));
    }

    [Fact]
    public async Task RunAsync_SlowPlatform_LeavesASlotForAnother()
    {
        _concurrency = 4;
        var release = new TaskCompletionSource<AccountResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var shopify = Platform("Shopify", Enumerable.Range(0, 10).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray());
        shopify.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(_ => release.Task);
        var etsyDone = 0;
        var allEtsyDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var etsy = Platform("Etsy", Enumerable.Range(0, 5).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray());
        etsy.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(async _ =>
        {
            await Task.Yield();
            if (Interlocked.Increment(ref etsyDone) == 5)
            {
                allEtsyDone.TrySetResult();
            }

            return AccountResult.Success(Outcome.Refreshed);
        });

        var run = Cycle(shopify, etsy).RunAsync();
        // Every Etsy account is done while every Shopify call in flight still waits for its answer.
        await allEtsyDone.Task.WaitAsync(TimeSpan.FromSeconds(10));
        release.SetResult(AccountResult.Success(Outcome.Validated));
        var summary = await run.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(10, summary.Platforms[0].Succeeded);
        Assert.Equal(5, summary.Platforms[1].Succeeded);
    }

    [Fact]
    public async Task RunAsync_PlatformWaitingForPermits_HoldsNoSlot()
    {
        _concurrency = 1;
        var permit = new TaskCompletionSource<(string?, TimeSpan)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var etsy = Platform("Etsy", new DueAccount(Guid.NewGuid().ToString()));
        etsy.Permits.TryTake(Arg.Any<TimeSpan>()).Returns((TimeSpan?)null);
        etsy.Permits.WaitAsync(Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(_ => permit.Task);
        var validated = 0;
        var allValidated = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var shopify = Platform("Shopify", Enumerable.Range(0, 6).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray());
        shopify.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(_ =>
        {
            if (Interlocked.Increment(ref validated) == 6)
            {
                allValidated.TrySetResult();
            }

            return AccountResult.Success(Outcome.Validated);
        });

        var run = Cycle(etsy, shopify).RunAsync();
        // With one slot in all, the six stores go through while Etsy waits for its permit.
        await allValidated.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await etsy.DidNotReceive().NextAsync(Arg.Any<int>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        permit.SetResult((null, default));
        var summary = await run.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(1, summary.Platforms[0].Succeeded);
        Assert.Equal(6, summary.Platforms[1].Succeeded);
    }

    [Fact]
    public async Task RunAsync_PermitWhoseMomentIsPastTheGrace_IsNotUsed_AnotherIsTaken()
    {
        var account = new DueAccount(Guid.NewGuid().ToString());
        var etsy = Platform("Etsy", account);
        etsy.Permits.TryTake(Arg.Any<TimeSpan>()).Returns((TimeSpan?)null);
        // The first permit's moment was 30 ms ago by the time it came (a busy machine): its call would go out beside the next one's.
        etsy.Permits.WaitAsync(Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(
            Task.FromResult<(string?, TimeSpan)>((null, TimeSpan.FromMilliseconds(30))),
            Task.FromResult<(string?, TimeSpan)>((null, TimeSpan.FromMilliseconds(5))));
        DueAccount? processed = null;
        etsy.ProcessAsync(Arg.Do<DueAccount>(a => processed = a), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(AccountResult.Success(Outcome.Refreshed));

        var summary = await Cycle(etsy).RunAsync();

        Assert.Equal(1, summary.Platforms[0].Succeeded);
        await etsy.Permits.Received(2).WaitAsync(Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        // The call carries the second permit's moment, 5 ms back: its grace runs from the moment, not from when it was taken.
        Assert.Equal(TimeSpan.FromMilliseconds(5), _time.GetElapsedTime(processed!.PermittedAt!.Value));
    }

    [Fact]
    public async Task RunAsync_PermitWhoseMomentIsAhead_GoesInTheClaim_ItsCallWaitsForTheMoment()
    {
        _concurrency = 2;
        var (a, b) = (new DueAccount("a"), new DueAccount("b"));
        var etsy = Platform("Etsy", a, b);
        // The first permit waited for; the second reserved with it, its moment 200 ms ahead.
        etsy.Permits.TryTake(Arg.Any<TimeSpan>()).Returns(null, TimeSpan.FromMilliseconds(-200), null);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var sentAfter = new System.Collections.Concurrent.ConcurrentDictionary<string, TimeSpan>();
        etsy.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(ci =>
        {
            sentAfter[ci.Arg<DueAccount>().Id] = clock.Elapsed;
            return AccountResult.Success(Outcome.Refreshed);
        });

        var summary = await Cycle(etsy).RunAsync();

        Assert.Equal("Etsy: 2/2 refreshed, 0 failed", summary.ToString());
        // Both in one claim; the second account's call left no sooner than its moment.
        await etsy.Received(1).NextAsync(2, Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
        Assert.True(sentAfter["b"] >= TimeSpan.FromMilliseconds(195), $"sent after {sentAfter["b"].TotalMilliseconds} ms");
    }

    [Fact]
    public async Task RunAsync_FewerClaimedThanTurns_TheSpareTurnsGoToTheNextClaim()
    {
        _concurrency = 3;
        var (a, b, c) = (new DueAccount("a"), new DueAccount("b"), new DueAccount("c"));
        var etsy = Platform("Etsy", a, b, c);
        // Three turns, and the first claim finds one account (another process took the next two meanwhile, say); the
        // second finds the last two.
        etsy.NextAsync(3, Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns([a]);
        etsy.NextAsync(2, Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns([b, c]);

        var summary = await Cycle(etsy).RunAsync();

        Assert.Equal("Etsy: 3/3 refreshed, 0 failed", summary.ToString());
        // Three permits for the three: the two the first claim did not use went to the second.
        Assert.Equal(3, etsy.Permits.ReceivedCalls().Count(c => c.GetMethodInfo().Name is nameof(IPermits.WaitAsync) or nameof(IPermits.TryTake)));
        await etsy.Received(2).NextAsync(Arg.Any<int>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>());
    }

    [Fact]
    public async Task RunAsync_GroupCap_BoundsThatGroupAlone()
    {
        _concurrency = 4;
        _groupCaps = new() { ["Shopify"] = 1 };
        var inFlight = 0;
        var peak = 0;
        var shopify = Platform("Shopify", Enumerable.Range(0, 8).Select(_ => new DueAccount(Guid.NewGuid().ToString())).ToArray());
        shopify.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<DateTimeOffset>(), Arg.Any<CancellationToken>()).Returns(async _ =>
        {
            InterlockedMax(ref peak, Interlocked.Increment(ref inFlight));
            await Task.Delay(5);
            Interlocked.Decrement(ref inFlight);
            return AccountResult.Success(Outcome.Validated);
        });

        var summary = await Cycle(shopify).RunAsync();

        Assert.Equal(8, summary.Platforms[0].Succeeded);
        Assert.Equal(1, peak);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}
