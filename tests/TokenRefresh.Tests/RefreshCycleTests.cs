using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using NSubstitute;
using NSubstitute.ExceptionExtensions;

namespace TokenRefresh.Tests;

public sealed class RefreshCycleTests
{
    private readonly FakeLogger<RefreshCycle> _logger = new();

    private static IPlatformRefresher Platform(string name, params DueAccount[] due)
    {
        var p = Substitute.For<IPlatformRefresher>();
        p.Platform.Returns(name);
        p.SuccessOutcome.Returns(Outcome.Refreshed);
        p.FindDueAsync(Arg.Any<CancellationToken>()).Returns(due);
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<CancellationToken>()).Returns(AccountResult.Success(Outcome.Refreshed));
        return p;
    }

    private RefreshCycle Cycle(params IPlatformRefresher[] platforms) => new(platforms, new FakeTimeProvider(), _logger);

    [Fact]
    public async Task RunAsync_OneAccountThrows_OthersStillRun()
    {
        var a = new DueAccount(Guid.NewGuid());
        var b = new DueAccount(Guid.NewGuid());
        var p = Platform("Etsy", a, b);
        p.ProcessAsync(a, Arg.Any<CancellationToken>()).ThrowsAsync(new InvalidOperationException("boom"));

        var summary = await Cycle(p).RunAsync();

        Assert.Equal("Etsy: 1/2 refreshed, 1 failed", summary.ToString());
        await p.Received(1).ProcessAsync(b, Arg.Any<CancellationToken>());
        var crash = Assert.Single(_logger.Collector.GetSnapshot(), r => r.Exception is InvalidOperationException);
        Assert.Contains(a.Id.ToString(), crash.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunAsync_AccountWithProblem_IsSkippedWithAWarningAndNeverProcessed()
    {
        var bad = new DueAccount(Guid.NewGuid(), Problem: "token_expires_at is NULL");
        var p = Platform("Etsy", bad);

        var summary = await Cycle(p).RunAsync();

        Assert.Equal(1, summary.Platforms[0].Skipped);
        await p.DidNotReceive().ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<CancellationToken>());
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Level == LogLevel.Warning && r.Message.Contains("token_expires_at is NULL", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RunAsync_PlatformCannotList_OtherPlatformsRunThenTheCycleFails()
    {
        var broken = Platform("Etsy");
        broken.FindDueAsync(Arg.Any<CancellationToken>()).ThrowsAsync(new TimeoutException("database unreachable"));
        var shopify = Platform("Shopify", new DueAccount(Guid.NewGuid()));

        var e = await Assert.ThrowsAsync<CycleFailedException>(() => Cycle(broken, shopify).RunAsync());

        Assert.IsType<TimeoutException>(e.InnerException);
        await shopify.Received(1).ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<CancellationToken>());
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Level == LogLevel.Error && r.Exception is TimeoutException);
    }

    [Fact]
    public async Task RunAsync_StopRequested_ClaimsNoMoreAccountsAndSaysHowManyAreLeft()
    {
        using var stop = new CancellationTokenSource();
        var first = new DueAccount(Guid.NewGuid());
        var p = Platform("Etsy", first, new DueAccount(Guid.NewGuid()), new DueAccount(Guid.NewGuid()));
        p.ProcessAsync(first, Arg.Any<CancellationToken>()).Returns(_ =>
        {
            stop.Cancel();
            return AccountResult.Success(Outcome.Refreshed);
        });

        var summary = await Cycle(p).RunAsync(stop.Token);

        Assert.Equal(1, summary.Platforms[0].Found);
        await p.Received(1).ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<CancellationToken>());
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Message.Contains("2 accounts left for the next cycle", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RunAsync_InFlightAccount_IsNotCancelledByShutdown()
    {
        using var stop = new CancellationTokenSource();
        var p = Platform("Etsy", new DueAccount(Guid.NewGuid()));
        var seen = CancellationToken.None;
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Do<CancellationToken>(t => seen = t)).Returns(_ =>
        {
            stop.Cancel();
            return AccountResult.Success(Outcome.Refreshed);
        });

        await Cycle(p).RunAsync(stop.Token);

        Assert.False(seen.CanBeCanceled);
    }

    [Fact]
    public async Task RunAsync_Summary_IsOneEventWithNamedCounts()
    {
        var p = Platform("Etsy", new DueAccount(Guid.NewGuid()), new DueAccount(Guid.NewGuid()));
        p.ProcessAsync(Arg.Any<DueAccount>(), Arg.Any<CancellationToken>())
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
}
