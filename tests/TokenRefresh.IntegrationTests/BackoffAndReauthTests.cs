using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>Failures back off across cycles; a revoked token is flagged and left alone until a new one is stored.</summary>
public sealed class BackoffAndReauthTests : HarnessTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    protected override async Task<ServiceHarness> StartAsync()
    {
        var h = await ServiceHarness.StartAsync();
        h.Time = _time;
        return h;
    }

    private async Task<(Guid Id, string Refresh)> DueUserAsync(long userId = 1)
    {
        var refresh = H.Fake.Etsy.AddAccount(userId);
        return (await H.Db.AddEtsyUserAsync(refresh, _time.GetUtcNow().AddMinutes(2)), refresh);
    }

    [Fact]
    public async Task InvalidGrant_FlagsReauthorisation_NoMoreCallsUntilTheApplicationStoresANewToken()
    {
        var (id, refresh) = await DueUserAsync();
        H.Fake.Etsy.Revoke(refresh);

        var (first, logs) = await H.RunCycleAsync();
        _time.Advance(TimeSpan.FromHours(3));
        var (second, _) = await H.RunCycleAsync();

        Assert.Contains(logs, l => l.Message.Contains("invalid_grant: needs re-authorisation", StringComparison.Ordinal));
        Assert.Equal(1, first.Platforms[0].Failed);
        Assert.Equal(0, second.Platforms[0].Found);
        Assert.Equal(1, H.Fake.Etsy.CallsFor(refresh));
        Assert.True((await H.Db.GetStateAsync("etsy", id))!.NeedsReauth);

        // The user connects again: the main application stores a new refresh token.
        var fresh = H.Fake.Etsy.AddAccount(1);
        await H.Db.ExecuteAsync($"UPDATE etsy_users SET refresh_token = @fresh WHERE {H.Db.EtsyKey} = @id", new { fresh, id });
        var (third, _) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", third.Platforms[0].ToString());
        var state = (await H.Db.GetStateAsync("etsy", id))!;
        Assert.False(state.NeedsReauth);
        Assert.Equal(0, state.ConsecutiveFailures);
        Assert.NotNull(state.LastSuccessAt);
    }

    [Fact]
    public async Task TransientFailures_BackOffExponentiallyAcrossCycles_SuccessClearsTheState()
    {
        // A token with hours left (a wide margin makes it due): its backoff is not shortened by its end (below).
        H.Settings["ETSY_REFRESH_MARGIN_MINUTES"] = "180";
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, _time.GetUtcNow().AddHours(2));
        H.Fake.Etsy.SetFault(refresh, FakeFault.ServerError, times: 3);
        var waits = new List<TimeSpan>();

        for (var failure = 1; failure <= 3; failure++)
        {
            var before = _time.GetUtcNow();
            await H.RunCycleAsync();
            var state = (await H.Db.GetStateAsync("etsy", id))!;
            Assert.Equal(failure, state.ConsecutiveFailures);
            Assert.Equal("server_error_500", state.LastError);
            waits.Add(new DateTimeOffset(state.NextAttemptAt!.Value, TimeSpan.Zero) - before);

            // Inside the backoff the account is not called, however many cycles run.
            _time.Advance(waits[^1] - TimeSpan.FromSeconds(1));
            await H.RunCycleAsync();
            Assert.Equal(failure, H.Fake.Etsy.CallsFor(refresh));
            _time.Advance(TimeSpan.FromSeconds(1));
        }

        // 5xx: the outcome is unknown, so no retry comes sooner than twice the HTTP timeout (2 s here); the first says
        // nothing about the account (Etsy may be down), so that is all; then its own backoff, 2 and 4 minutes.
        Assert.Equal([TimeSpan.FromSeconds(4), TimeSpan.FromMinutes(2), TimeSpan.FromMinutes(4)], waits.Select(w => TimeSpan.FromSeconds(Math.Round(w.TotalSeconds))));
        var (last, _) = await H.RunCycleAsync();
        Assert.Equal(1, last.Platforms[0].Succeeded);
        var cleared = (await H.Db.GetStateAsync("etsy", id))!;
        Assert.Equal(0, cleared.ConsecutiveFailures);
        Assert.Null(cleared.NextAttemptAt);
        Assert.Null(cleared.LastError);
    }

    [Fact]
    public async Task ServerErrorsNearTheTokensEnd_RetriedBeforeItEnds_NotBehindABackoff()
    {
        var (id, refresh) = await DueUserAsync(); // its access token ends in 2 minutes
        var expiry = _time.GetUtcNow().AddMinutes(2);
        H.Fake.Etsy.SetFault(refresh, FakeFault.ServerError, times: 2);

        await H.RunCycleAsync();
        _time.Advance(TimeSpan.FromSeconds(4)); // the in-flight wait after the first
        var second = _time.GetUtcNow();
        await H.RunCycleAsync();
        var state = (await H.Db.GetStateAsync("etsy", id))!;

        // Not the 2-minute backoff, which would outlast the token: half the time it has left.
        Assert.Equal(2, state.ConsecutiveFailures);
        var wait = new DateTimeOffset(state.NextAttemptAt!.Value, TimeSpan.Zero) - second;
        Assert.Equal(Math.Round((expiry - second).TotalSeconds / 2), Math.Round(wait.TotalSeconds));
        _time.Advance(wait);
        await H.RunCycleAsync();
        Assert.Equal(3, H.Fake.Etsy.CallsFor(refresh));
        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        Assert.True(_time.GetUtcNow() < expiry);
    }

    [Xunit.Fact]
    public void Backoff_IsCappedAtOneHour() =>
        Assert.Equal(TimeSpan.FromHours(1), Persistence.AccountState.Backoff(30));

    [Fact]
    public async Task InvalidGrantAfterAnUnknownOutcome_IsNotBelievedTheFirstTime_ARepeatIsBelieved()
    {
        var (id, refresh) = await DueUserAsync();
        // Etsy rotates, but the answer never arrives: the new pair is lost and the old token is dead.
        H.Fake.Etsy.SetFault(refresh, FakeFault.RotateThenReset, times: 1);

        var (first, _) = await H.RunCycleAsync();
        var afterUnknown = (await H.Db.GetStateAsync("etsy", id))!;
        Assert.Equal(1, first.Platforms[0].Failed);
        Assert.Equal("network_error", afterUnknown.LastError);
        Assert.NotNull(afterUnknown.UnknownOutcomeAt);

        // Hours later (a long outage, a long backoff): the first invalid_grant is still not believed.
        _time.Advance(TimeSpan.FromHours(3));
        var (second, logs) = await H.RunCycleAsync();
        var suspect = (await H.Db.GetStateAsync("etsy", id))!;
        Assert.Equal(1, second.Platforms[0].Failed);
        Assert.False(suspect.NeedsReauth);
        Assert.Equal(Persistence.AccountState.SuspectInvalidGrant, suspect.LastError);
        Assert.Contains(logs, l => l.Level == LogLevel.Error && l.Message.Contains("invalid_grant_after_unknown_outcome, transient", StringComparison.Ordinal));

        // The next attempt decides: invalid_grant again is believed.
        _time.Advance(TimeSpan.FromMinutes(3));
        await H.RunCycleAsync();
        Assert.True((await H.Db.GetStateAsync("etsy", id))!.NeedsReauth);
        Assert.Equal(3, H.Fake.Etsy.CallsFor(refresh));
    }

    [Fact]
    public async Task UnknownOutcome_ThenTheTokenStillWorks_Refreshes()
    {
        var (id, refresh) = await DueUserAsync();
        H.Fake.Etsy.SetFault(refresh, FakeFault.Hang, times: 1);
        H.Time = null; // the HTTP timeout runs on the real clock

        await H.RunCycleAsync();
        Assert.Equal("timeout", (await H.Db.GetStateAsync("etsy", id))!.LastError);
        // Let the backoff and the in-flight wait pass by moving them into the past.
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = now() - interval '1 second', unknown_outcome_at = unknown_outcome_at - interval '10 minutes'");
        var (second, _) = await H.RunCycleAsync();

        Assert.Equal(1, second.Platforms[0].Succeeded);
        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Fact]
    public async Task RefusedConnection_IsAKnownOutcome_BackedOffButNeverSuspect()
    {
        var (id, _) = await DueUserAsync();
        H.Settings["ETSY_API_BASE_URL"] = "http://127.0.0.1:1";
        H.UseLoopbackUrls = true;

        var (summary, _) = await H.RunCycleAsync();

        var state = (await H.Db.GetStateAsync("etsy", id))!;
        Assert.Equal(1, summary.Platforms[0].Failed);
        Assert.Equal("connection_failed", state.LastError);
        Assert.Null(state.UnknownOutcomeAt);
    }

    [Fact]
    public async Task EtsyRetryAfter_PausesTheNextCallsForThatLong()
    {
        var (limitedId, limited) = await DueUserAsync(1);
        var (_, next) = await DueUserAsync(2);
        await H.Db.ExecuteAsync($"UPDATE etsy_users SET token_expires_at = token_expires_at - interval '1 minute' WHERE {H.Db.EtsyKey} = @limitedId", new { limitedId });
        H.Fake.Etsy.RetryAfterSeconds = 1;
        H.Fake.Etsy.SetFault(limited, FakeFault.RateLimited);
        H.Time = null; // real time: the pause is a real wait
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "1"; // the pause holds back the calls after the 429, not those already in flight

        var (summary, _) = await H.RunCycleAsync();

        var times = H.Fake.Etsy.CallTimes.Order().ToList();
        Assert.Equal(2, times.Count);
        Assert.True(times[1] - times[0] >= TimeSpan.FromSeconds(0.9), $"second call {times[1] - times[0]} after the 429");
        Assert.Equal(1, summary.Platforms[0].Succeeded);
        Assert.NotNull(H.Fake.Etsy.IssuedFor(next));
        var state = (await H.Db.GetStateAsync("etsy", limitedId))!;
        Assert.Equal("rate_limited", state.LastError);
    }

    [Fact]
    public async Task EtsyRetryAfterPastTheBudget_LeavesTheOtherAccountsForTheNextCycle()
    {
        var (limitedId, limited) = await DueUserAsync(1);
        var (_, next) = await DueUserAsync(2);
        await H.Db.ExecuteAsync($"UPDATE etsy_users SET token_expires_at = token_expires_at - interval '1 minute' WHERE {H.Db.EtsyKey} = @limitedId", new { limitedId });
        H.Fake.Etsy.RetryAfterSeconds = 3600;
        H.Fake.Etsy.SetFault(limited, FakeFault.RateLimited);
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "1";

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(0, H.Fake.Etsy.CallsFor(next));
        Assert.Equal(1, summary.Platforms[0].LeftOver);
        Assert.True(new DateTimeOffset((await H.Db.GetStateAsync("etsy", limitedId))!.NextAttemptAt!.Value, TimeSpan.Zero) >= _time.GetUtcNow().AddMinutes(59));
    }

    [Fact]
    public async Task EtsyMaxRequestsPerSecond_BoundsTheCallRate()
    {
        for (var i = 0; i < 15; i++)
        {
            await DueUserAsync(i + 1);
        }

        H.Settings["ETSY_MAX_REQUESTS_PER_SECOND"] = "5";
        H.Time = null;
        var start = DateTimeOffset.UtcNow;

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(15, summary.Platforms[0].Succeeded);
        // A token bucket of 5, made during the cycle, allows a burst of 5, then 5 more after each second. A call
        // arrives at the fake no earlier than its permit, however its connection and TLS handshake went, so these
        // bounds hold on any machine: at most 5 calls in the first 0.95 s, at most 10 in the first 1.95 s.
        var times = H.Fake.Etsy.CallTimes.Select(t => t - start).Order().ToList();
        Assert.True(times.Count(t => t < TimeSpan.FromSeconds(0.95)) <= 5, string.Join(", ", times));
        Assert.True(times.Count(t => t < TimeSpan.FromSeconds(1.95)) <= 10, string.Join(", ", times));
        Assert.True(times[^1] >= TimeSpan.FromSeconds(1.95), $"the 15th call arrived {times[^1]} after the start");
    }

    [Theory]
    [InlineData(FakeFault.Throttled)]
    [InlineData(FakeFault.RateLimited)]
    [InlineData(FakeFault.ServerError)]
    public async Task ShopifyTransientFailure_PausesThatStoreOnly(FakeFault fault)
    {
        H.Fake.Shopify.AddStore("slow.myshopify.com", "shpat_slow");
        H.Fake.Shopify.AddStore("fine.myshopify.com", "shpat_fine");
        var slow = await H.Db.AddShopifyStoreAsync("slow.myshopify.com", "shpat_slow");
        await H.Db.AddShopifyStoreAsync("fine.myshopify.com", "shpat_fine");
        H.Fake.Shopify.SetFault("slow.myshopify.com", fault);

        // The store waits (for the throttle's Retry-After, or after a 5xx for the in-flight wait), the others do not.
        await H.RunCycleAsync();
        var (second, _) = await H.RunCycleAsync();
        Assert.Equal(1, H.Fake.Shopify.GraphQlCallsFor("slow.myshopify.com"));
        Assert.Equal(2, H.Fake.Shopify.GraphQlCallsFor("fine.myshopify.com"));
        Assert.Equal(1, second.Platforms[1].Found);

        // Then it is tried again: neither a 429 nor a first server error backs the store off for longer.
        _time.Advance(TimeSpan.FromSeconds(30));
        await H.RunCycleAsync();
        Assert.Equal(2, H.Fake.Shopify.GraphQlCallsFor("slow.myshopify.com"));
        Assert.Equal(3, H.Fake.Shopify.GraphQlCallsFor("fine.myshopify.com"));
        Assert.True((await H.Db.GetShopifyStoreAsync(slow)).IsActive);
    }
}
