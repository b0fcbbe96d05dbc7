using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace TokenRefresh.Tests;

/// <summary>An outage is told from an account's failure, and once it ends each platform of its group hears of it once.</summary>
public sealed class PlatformHealthTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));

    [Fact]
    public void EndedOutage_GivesItsFirstFailure_OnceToEachPlatformOfTheGroup()
    {
        var health = new PlatformHealth("Shopify", _time, NullLogger.Instance);
        var first = _time.GetUtcNow();
        for (var i = 0; i < PlatformHealth.Threshold; i++)
        {
            health.Record("server_error_500");
            _time.Advance(TimeSpan.FromSeconds(10));
        }

        var whileDown = health.TakeEndedOutage("shopify_refresh");
        health.Record(null);

        Assert.Null(whileDown);
        Assert.Equal(first, health.TakeEndedOutage("shopify_refresh"));
        Assert.Null(health.TakeEndedOutage("shopify_refresh"));
        Assert.Equal(first, health.TakeEndedOutage("shopify"));
    }

    [Fact]
    public void FailuresBelowTheThreshold_OrA429_AreNoOutage()
    {
        var health = new PlatformHealth("Etsy", _time, NullLogger.Instance);
        for (var i = 0; i < PlatformHealth.Threshold - 1; i++)
        {
            health.Record("timeout");
        }

        health.Record("rate_limited");
        health.Record(null);

        Assert.False(health.IsDown);
        Assert.Null(health.TakeEndedOutage("etsy"));
    }
}
