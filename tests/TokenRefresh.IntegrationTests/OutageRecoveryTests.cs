using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;
using TokenRefresh.Scheduling;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// An Etsy outage longer than the margin, through one host (the platform's health lives as long as the process): the
/// outage's failures put no account behind a backoff (and those before it was seen as one are lifted), and the cycle
/// that finds Etsy answering refreshes every expired token in it.
/// </summary>
public sealed class OutageRecoveryTests : HarnessTests
{
    [Fact]
    public async Task OutageLongerThanTheMargin_TheFirstCycleThatFindsEtsyAnsweringRefreshesEveryExpiredToken_AndHeldBackAccountsAreLiftedNext()
    {
        var users = new List<(Guid Id, string Refresh)>();
        for (var i = 0; i < 12; i++)
        {
            var refresh = H.Fake.Etsy.AddAccount(2000 + i);
            users.Add((await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddSeconds(30 + i)), refresh));
        }

        // One call at a time: with more, calls already in flight when the fifth 500 marks Etsy down still go out.
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "1";
        using var host = H.BuildHost();
        var cycle = host.Services.GetRequiredService<RefreshCycle>();
        var logs = host.Services.GetFakeLogCollector();
        H.Fake.Etsy.PlatformFault = FakeFault.ServerError;

        // Five 500s in a row make Etsy down, then one account goes alone as the probe; the other six wait for the next cycle.
        var first = await cycle.RunAsync();
        Assert.Equal(PlatformHealth.Threshold + 1, H.Fake.Etsy.TotalCalls);
        Assert.Equal(6, first.Platforms[0].LeftOver);
        Assert.Contains(logs.GetSnapshot(), r => r.Id.Id == 15);
        foreach (var (id, _) in users.Take(6))
        {
            // A first 500 says nothing against the account: no backoff, only the in-flight wait (twice the 2 s HTTP timeout).
            var state = await H.Db.GetStateAsync("etsy", id);
            Assert.Equal(("server_error_500", 1), (state!.LastError, state.ConsecutiveFailures));
            Assert.True(state.NextAttemptAt <= DateTime.UtcNow.AddSeconds(4), $"next attempt {state.NextAttemptAt:O}");
        }

        // The outage outlasts the margin: every token expires. One user had failed twice before Etsy looked down, and backs off.
        await H.Db.ExecuteAsync("UPDATE etsy_users SET token_expires_at = (now() AT TIME ZONE 'UTC') - interval '1 minute'");
        await CycleIntervalPassesAsync();
        var heldBack = users[0].Id;
        await H.Db.ExecuteAsync(
            "UPDATE token_refresh_state SET consecutive_failures = 2, next_attempt_at = now() + interval '2 minutes' WHERE platform = 'etsy' AND account_id = @Id",
            new { Id = heldBack.ToString() });
        var before = H.Fake.Etsy.TotalCalls;
        var second = await cycle.RunAsync();
        Assert.Equal(1, H.Fake.Etsy.TotalCalls - before);
        Assert.Equal(0, second.Platforms[0].Succeeded);

        // Etsy answers: the probe finds out, and the same cycle refreshes every expired token but the held-back one.
        H.Fake.Etsy.PlatformFault = FakeFault.None;
        await CycleIntervalPassesAsync();
        var third = await cycle.RunAsync();
        Assert.Equal("Etsy: 11/11 refreshed, 0 failed", third.Platforms[0].ToString());
        Assert.Contains(logs.GetSnapshot(), r => r.Id.Id == 16);
        foreach (var (id, refresh) in users.Skip(1))
        {
            Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        }

        await CycleIntervalPassesAsync();
        // The next cycle lifts the wait the outage gave it, and its failures stop counting.
        var fourth = await cycle.RunAsync();
        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", fourth.Platforms[0].ToString());
        Assert.Contains(logs.GetSnapshot(), r => r.Message == "Etsy: after the platform's outage, 1 accounts that waited because of it are due again");
        Assert.Equal(H.Fake.Etsy.IssuedFor(users[0].Refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(heldBack)).RefreshToken);
    }

    // A cycle's interval passes between two cycles run back to back here: the in-flight waits (4 s) of the last one's calls
    // end, as they do within the 3-minute schedule. The held-back account's own backoff (2 minutes) does not.
    private Task CycleIntervalPassesAsync() => H.Db.ExecuteAsync("""
        UPDATE token_refresh_state SET unknown_outcome_at = unknown_outcome_at - interval '5 seconds',
               next_attempt_at = CASE WHEN next_attempt_at < now() + interval '5 seconds' THEN next_attempt_at - interval '5 seconds' ELSE next_attempt_at END
        """);
}
