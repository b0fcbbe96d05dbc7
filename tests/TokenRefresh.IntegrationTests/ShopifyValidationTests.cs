using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

public sealed class ShopifyValidationTests : HarnessTests
{


    private async Task<Guid> StoreAsync(string shop, bool isActive = true)
    {
        var token = $"shpat_{Guid.NewGuid():N}";
        H.Fake.Shopify.AddStore(shop, token);
        return await H.Db.AddShopifyStoreAsync(shop, token, isActive);
    }

    [Fact]
    public async Task Cycle_ValidToken_StaysActiveAndUntouched()
    {
        var id = await StoreAsync("good.myshopify.com");
        var before = await H.Db.GetShopifyStoreAsync(id);

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(before, await H.Db.GetShopifyStoreAsync(id));
        Assert.Equal("Shopify: 1/1 validated, 0 deactivated, 0 failed", summary.Platforms[1].ToString());
        Assert.Equal(1, H.Fake.Shopify.GraphQlCallsFor("good.myshopify.com"));
        Assert.Equal("2026-10", H.Fake.Shopify.LastApiVersion);
    }

    [Fact]
    public async Task Cycle_ValidationStateCannotBeWritten_StoresStayValidatedAndActive_TheNextCycleAfterTheClaimRecordsThem()
    {
        // 40 stores: one batch of 32 successes recorded during the cycle, and the 8 left when it ends.
        var ids = new List<Guid>();
        for (var i = 0; i < 40; i++)
        {
            ids.Add(await StoreAsync($"s{i}.myshopify.com"));
        }

        await H.Db.ExecuteAsync("""
            CREATE FUNCTION refuse_state() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected: the state cannot be written' USING ERRCODE = '53100'; END $$;
            CREATE TRIGGER refuse_state BEFORE INSERT OR UPDATE ON token_refresh_state FOR EACH ROW
                WHEN (NEW.last_success_at IS NOT NULL) EXECUTE FUNCTION refuse_state();
            """);

        var (refused, logs) = await H.RunCycleAsync();

        Assert.Equal("Shopify: 40/40 validated, 0 deactivated, 0 failed", refused.Platforms[1].ToString());
        var notSaved = logs.Where(l => l.Id.Id == 304).ToList();
        Assert.Equal([32, 8], notSaved.Select(l => Convert.ToInt32(l.StructuredState!.Single(p => p.Key == "Count").Value, System.Globalization.CultureInfo.InvariantCulture)).Order().Reverse());
        Assert.All(notSaved, l => Assert.Equal(LogLevel.Error, l.Level));
        Assert.Equal(0L, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE last_success_at IS NOT NULL"));
        foreach (var id in ids)
        {
            Assert.True((await H.Db.GetShopifyStoreAsync(id)).IsActive);
        }

        // The cycle's claim on them (their next check a lease ahead) runs out.
        Assert.Equal(40L, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE platform = 'shopify' AND next_check_at > now()"));
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET next_check_at = now()");
        await H.Db.ExecuteAsync("DROP TRIGGER refuse_state ON token_refresh_state");
        var (next, nextLogs) = await H.RunCycleAsync();

        Assert.Equal("Shopify: 40/40 validated, 0 deactivated, 0 failed", next.Platforms[1].ToString());
        Assert.DoesNotContain(nextLogs, l => l.Id.Id == 304);
        Assert.Equal(40L, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE platform = 'shopify' AND last_success_at IS NOT NULL"));
    }

    [Fact]
    public async Task Cycle_ApiVersionSetting_IsTheVersionCalled()
    {
        await StoreAsync("good.myshopify.com");
        H.Settings["SHOPIFY_API_VERSION"] = "2026-07";

        await H.RunCycleAsync();

        Assert.Equal("2026-07", H.Fake.Shopify.LastApiVersion);
    }

    [Fact]
    public async Task Cycle_RevokedToken_DeactivatesTheStore()
    {
        var id = await StoreAsync("revoked.myshopify.com");
        var keep = await StoreAsync("fine.myshopify.com");
        H.Fake.Shopify.RevokeAccessToken("revoked.myshopify.com");
        var before = DateTime.UtcNow;

        var (summary, logs) = await H.RunCycleAsync();

        var row = await H.Db.GetShopifyStoreAsync(id);
        Assert.False(row.IsActive);
        Assert.InRange(row.UpdatedAt, before.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5));
        Assert.True((await H.Db.GetShopifyStoreAsync(keep)).IsActive);
        Assert.Equal("Shopify: 1/2 validated, 1 deactivated, 0 failed", summary.Platforms[1].ToString());
        Assert.Contains(logs, l => l.Message.Contains("revoked.myshopify.com", StringComparison.Ordinal) && l.Message.Contains("deactivated", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(FakeFault.PaymentRequired, "shop_unavailable_402")]
    [InlineData(FakeFault.Forbidden, "forbidden_403")]
    [InlineData(FakeFault.NotFound, "not_found_404")]
    [InlineData(FakeFault.Locked, "shop_locked_423")]
    [InlineData(FakeFault.RateLimited, "rate_limited")]
    [InlineData(FakeFault.Throttled, "throttled")]
    [InlineData(FakeFault.ShopInactive, "shop_inactive")]
    [InlineData(FakeFault.ServerError, "server_error_500")]
    [InlineData(FakeFault.Hang, "timeout")]
    [InlineData(FakeFault.ResetConnection, "network_error")]
    [InlineData(FakeFault.NotJson, "malformed_response")]
    public async Task Cycle_AnythingButA401_LeavesTheStoreActiveAndReportsTheReason(FakeFault fault, string reason)
    {
        var id = await StoreAsync("troubled.myshopify.com");
        H.Fake.Shopify.SetFault("troubled.myshopify.com", fault);
        var before = await H.Db.GetShopifyStoreAsync(id);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal(before, await H.Db.GetShopifyStoreAsync(id));
        Assert.Equal("Shopify: 0/1 validated, 0 deactivated, 1 failed", summary.Platforms[1].ToString());
        var line = Assert.Single(logs, l => l.Level == LogLevel.Error && l.Message.Contains("troubled.myshopify.com", StringComparison.Ordinal));
        Assert.Contains($"failed ({reason}", line.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cycle_InactiveStore_IsNotCalled()
    {
        await StoreAsync("gone.myshopify.com", isActive: false);

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(0, H.Fake.Shopify.GraphQlCallsFor("gone.myshopify.com"));
        Assert.Equal(0, summary.Platforms[1].Found);
    }

    [Fact]
    public async Task Cycle_TokenReplacedWhileValidating_StoreIsNotDeactivated()
    {
        var id = await StoreAsync("racing.myshopify.com");
        H.Fake.Shopify.RevokeAccessToken("racing.myshopify.com");
        // The main application stores a fresh token before the 401 arrives: the delay holds the answer back.
        H.Fake.Latency = TimeSpan.FromMilliseconds(500);
        var cycle = H.RunCycleAsync();
        await WaitUntilAsync(() => H.Fake.Shopify.GraphQlCallsFor("racing.myshopify.com") >= 1);
        await H.Db.ExecuteAsync("UPDATE shopify_stores SET access_token = 'shpat_brand_new' WHERE id = @id", new { id });

        var (summary, _) = await cycle;

        Assert.True((await H.Db.GetShopifyStoreAsync(id)).IsActive);
        Assert.Equal(1, summary.Platforms[1].Skipped);
    }

    private static Task WaitUntilAsync(Func<bool> condition) => Poll.UntilAsync(condition, TimeSpan.FromSeconds(10));
}

/// <summary>SHOPIFY_VALIDATE_INTERVAL_MINUTES: each store at most once per interval, spread evenly across cycles.</summary>
public sealed class ShopifyValidateIntervalTests : HarnessTests
{
    private readonly Microsoft.Extensions.Time.Testing.FakeTimeProvider _time = new(DateTimeOffset.UtcNow);


    [Fact]
    public async Task Interval_EachStoreOncePerInterval_SpreadEvenlyAcrossCycles()
    {
        const int stores = 120;
        for (var i = 0; i < stores; i++)
        {
            H.Fake.Shopify.AddStore($"s{i}.myshopify.com", $"shpat_{i}");
            await H.Db.AddShopifyStoreAsync($"s{i}.myshopify.com", $"shpat_{i}");
        }

        H.Time = _time;
        H.Settings["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = "60";

        var (first, _) = await H.RunCycleAsync();
        using (var host = H.BuildHost())
        {
            // Status agrees: right after every store was validated, none is due.
            var status = await host.Services.GetRequiredService<StatusReader>().ReadAsync(CancellationToken.None);
            Assert.Equal(0, status.Single(p => p.Platform == "Shopify").Due);
        }

        var perCycle = new List<int>();
        for (var cycle = 1; cycle <= 20; cycle++)
        {
            _time.Advance(TimeSpan.FromMinutes(3));
            var (summary, _) = await H.RunCycleAsync();
            perCycle.Add(summary.Platforms[1].Succeeded);
        }

        // Never validated: all at once. Then every store exactly once in the next 60 minutes, about 6 per 3-minute cycle.
        Assert.Equal(stores, first.Platforms[1].Succeeded);
        Assert.Equal(stores, perCycle.Sum());
        Assert.All(Enumerable.Range(0, stores), i => Assert.Equal(2, H.Fake.Shopify.GraphQlCallsFor($"s{i}.myshopify.com")));
        Assert.True(perCycle.Max() <= 15, $"uneven spread: {string.Join(", ", perCycle)}");
        Assert.True(perCycle.Count(n => n > 0) >= 15, $"uneven spread: {string.Join(", ", perCycle)}");
    }

    [Fact]
    public async Task Interval_Shortened_EveryStoreFollowsTheNewOneAtOnce()
    {
        const int stores = 60;
        await AddStoresAsync(stores);
        H.Time = _time;
        H.Settings["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = "1440";
        await H.RunCycleAsync();

        // A day's schedule, then an hour's: every store is validated again within the hour and the minute kept for the
        // replicas' clocks (a day's schedule would leave most of them for the next 24 hours).
        H.Settings["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = "60";
        var perCycle = new List<int>();
        for (var cycle = 1; cycle <= 21; cycle++)
        {
            _time.Advance(TimeSpan.FromMinutes(3));
            perCycle.Add((await H.RunCycleAsync()).Summary.Platforms[1].Succeeded);
        }

        Assert.All(Enumerable.Range(0, stores), i => Assert.InRange(H.Fake.Shopify.GraphQlCallsFor($"s{i}.myshopify.com"), 2, 3));
        Assert.True(perCycle.Count(n => n > 0) >= 10, $"uneven spread: {string.Join(", ", perCycle)}");
    }

    [Fact]
    public async Task FailingStore_GivenANewToken_IsDueAtOnce_AnotherWaitsForItsBackoff()
    {
        await AddStoresAsync(2);
        H.Time = _time;
        H.Settings["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = "60";
        H.Fake.Shopify.SetFault("s0.myshopify.com", FakeFault.Locked, times: 1);
        H.Fake.Shopify.SetFault("s1.myshopify.com", FakeFault.Locked, times: 1);
        var (failed, _) = await H.RunCycleAsync();

        // Within its minute of backoff, the main application stores a new token for s0.
        H.Fake.Shopify.AddStore("s0.myshopify.com", "shpat_renewed");
        await H.Db.ExecuteAsync("UPDATE shopify_stores SET access_token = 'shpat_renewed' WHERE shop_domain = 's0.myshopify.com'");
        _time.Advance(TimeSpan.FromSeconds(10));
        var (next, _) = await H.RunCycleAsync();

        Assert.Equal(2, failed.Platforms[1].Failed);
        Assert.Equal("Shopify: 1/1 validated, 0 deactivated, 0 failed", next.Platforms[1].ToString());
        Assert.Equal((2, 1), (H.Fake.Shopify.GraphQlCallsFor("s0.myshopify.com"), H.Fake.Shopify.GraphQlCallsFor("s1.myshopify.com")));
    }

    [Fact]
    public async Task TwoReplicasAtOnce_EachStoreValidatedByOne()
    {
        const int stores = 300;
        await AddStoresAsync(stores);
        H.Fake.Latency = TimeSpan.FromMilliseconds(20);
        using var one = H.BuildHost();
        using var two = H.BuildHost();

        var summaries = await Task.WhenAll(
            one.Services.GetRequiredService<RefreshCycle>().RunAsync(), two.Services.GetRequiredService<RefreshCycle>().RunAsync());

        Assert.Equal(stores, summaries.Sum(s => s.Platforms[1].Succeeded));
        Assert.All(Enumerable.Range(0, stores), i => Assert.Equal(1, H.Fake.Shopify.GraphQlCallsFor($"s{i}.myshopify.com")));
    }

    private async Task AddStoresAsync(int count)
    {
        for (var i = 0; i < count; i++)
        {
            H.Fake.Shopify.AddStore($"s{i}.myshopify.com", $"shpat_{i}");
            await H.Db.AddShopifyStoreAsync($"s{i}.myshopify.com", $"shpat_{i}");
        }
    }

    [Fact]
    public async Task NoInterval_EveryStoreEveryCycle()
    {
        H.Fake.Shopify.AddStore("a.myshopify.com", "shpat_a");
        await H.Db.AddShopifyStoreAsync("a.myshopify.com", "shpat_a");

        await H.RunCycleAsync();
        await H.RunCycleAsync();

        Assert.Equal(2, H.Fake.Shopify.GraphQlCallsFor("a.myshopify.com"));
    }
}
