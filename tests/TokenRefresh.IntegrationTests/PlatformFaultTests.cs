using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// A platform incident cannot switch stores off, a configuration fault pauses the platform rather than every
/// account, and whatever happens after a request was sent is an unknown outcome.
/// </summary>
public sealed class PlatformFaultTests : HarnessTests
{
    private async Task<List<Guid>> RevokedStoresAsync(int count)
    {
        var ids = new List<Guid>();
        for (var i = 0; i < count; i++)
        {
            var shop = $"gone-{i}.myshopify.com";
            H.Fake.Shopify.AddStore(shop, $"shpat_gone_{i}");
            ids.Add(await H.Db.AddShopifyStoreAsync(shop, $"shpat_gone_{i}"));
            H.Fake.Shopify.RevokeAccessToken(shop);
        }

        return ids;
    }

    [Fact]
    public async Task Validate_OneUnconfirmed401_LeavesTheStoreActive()
    {
        H.Fake.Shopify.AddStore("blip.myshopify.com", "shpat_blip");
        var id = await H.Db.AddShopifyStoreAsync("blip.myshopify.com", "shpat_blip");
        H.Fake.Shopify.SetFault("blip.myshopify.com", FakeFault.Unauthorized, times: 1);

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal("Shopify: 1/1 validated, 0 deactivated, 0 failed", summary.Platforms[1].ToString());
        Assert.True((await H.Db.GetShopifyStoreAsync(id)).IsActive);
        Assert.Equal(2, H.Fake.Shopify.GraphQlCallsFor("blip.myshopify.com"));
    }

    [Fact]
    public async Task Validate_ConfirmedRejectionsOfASmallShopList_AreAllDeactivated()
    {
        var ids = await RevokedStoresAsync(IncidentGuardFloor);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal($"Shopify: 0/{IncidentGuardFloor} validated, {IncidentGuardFloor} deactivated, 0 failed", summary.Platforms[1].ToString());
        foreach (var id in ids)
        {
            Assert.False((await H.Db.GetShopifyStoreAsync(id)).IsActive);
        }

        Assert.DoesNotContain(logs, l => l.Message.Contains("deactivation is paused", StringComparison.Ordinal));
    }

    private static int IncidentGuardFloor => IncidentGuard.Floor;

    [Fact]
    public async Task Validate_TwoHundredStoresRejectedInOneCycle_DeactivatesNoMoreThanTheLimit_AndPausesTheRest()
    {
        var ids = await RevokedStoresAsync(200);
        using var host = H.BuildHost();
        using var paused = new MetricCollector<long>(host.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(),
            TokenRefreshMetrics.MeterName, "tokenrefresh.deactivations.paused");

        var summary = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        var logs = host.Services.GetFakeLogCollector().GetSnapshot();
        var (code, json, _) = await CliProcess.RunAsync(["status", "--json"], H.Settings);

        // The limit: the larger of the floor (5) and 2% of the 200 stores Shopify answered (4). More than that is a wave: the cycle's
        // decision comes once its validations are done, so not even the first five are switched off.
        Assert.Equal("Shopify: 0/200 validated, 0 deactivated, 200 failed", summary.Platforms[1].ToString());
        foreach (var id in ids)
        {
            Assert.True((await H.Db.GetShopifyStoreAsync(id)).IsActive);
        }

        var error = Assert.Single(logs, l => l.Message.Contains("none of them is deactivated", StringComparison.Ordinal));
        Assert.Equal(LogLevel.Error, error.Level);
        Assert.Contains("more than 5 stores were rejected", error.Message, StringComparison.Ordinal);
        Assert.Equal(200, logs.Count(l => l.Message.Contains("failed (deactivation_paused, transient)", StringComparison.Ordinal)));
        Assert.Equal(200, paused.GetMeasurementSnapshot().Sum(m => m.Value));
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        Assert.Equal(200, doc.RootElement.GetProperty("platforms")[1].GetProperty("deactivationPaused").GetInt64());
    }

    [Fact]
    public async Task Validate_AWaveThenItsTail_SwitchesNoStoreOff_ThenACalmCycleDeactivatesTheRealUninstalls()
    {
        // A wave of 401s to valid tokens (Shopify's incident): 40 stores, every one rejected.
        var stores = new List<Guid>();
        for (var i = 0; i < 40; i++)
        {
            var shop = $"fine-{i}.myshopify.com";
            H.Fake.Shopify.AddStore(shop, $"shpat_fine_{i}");
            stores.Add(await H.Db.AddShopifyStoreAsync(shop, $"shpat_fine_{i}"));
        }

        var uninstalled = (await RevokedStoresAsync(1))[0];
        H.Fake.Shopify.PlatformFault = FakeFault.Unauthorized;
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        H.Time = time;
        using var host = H.BuildHost();
        var cycle = host.Services.GetRequiredService<RefreshCycle>;
        var wave = await cycle().RunAsync();
        Assert.Equal(0, wave.Platforms[1].Deactivated);

        // Its tail: the next cycle sees only a few rejections (under the limit), and still switches none off.
        H.Fake.Shopify.PlatformFault = FakeFault.None;
        time.Advance(Persistence.AccountState.Backoff(1));
        var tail = await cycle().RunAsync();
        Assert.Equal(0, tail.Platforms[1].Deactivated);
        Assert.True((await H.Db.GetShopifyStoreAsync(uninstalled)).IsActive);

        // A calm cycle: the store that really uninstalled is deactivated, and every other store stayed active throughout.
        time.Advance(Persistence.AccountState.Backoff(2));
        var calm = await cycle().RunAsync();
        Assert.Equal(1, calm.Platforms[1].Deactivated);
        Assert.False((await H.Db.GetShopifyStoreAsync(uninstalled)).IsActive);
        foreach (var id in stores)
        {
            Assert.True((await H.Db.GetShopifyStoreAsync(id)).IsActive);
        }
    }

    // Stores validated once, each due again at its own point of an hour.
    private async Task<List<Guid>> ValidatedStoresAsync(int count)
    {
        H.Settings["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = "60";
        var ids = new List<Guid>();
        for (var i = 0; i < count; i++)
        {
            H.Fake.Shopify.AddStore($"fine-{i}.myshopify.com", $"shpat_fine_{i}");
            ids.Add(await H.Db.AddShopifyStoreAsync($"fine-{i}.myshopify.com", $"shpat_fine_{i}"));
        }

        var (first, _) = await H.RunCycleAsync();
        Assert.Equal($"Shopify: {count}/{count} validated, 0 deactivated, 0 failed", first.Platforms[1].ToString());
        return ids;
    }

    [Fact]
    public async Task Validate_AWaveBeginningInACycleWithTwoStoresDue_SwitchesNeitherOff_ForStoresThatPassedAreRejectedToo()
    {
        // 40 stores validated, then a wave of 401s begins when only two of them are due: two rejections, under the limit.
        var ids = await ValidatedStoresAsync(40);
        await H.Db.ExecuteAsync($"UPDATE token_refresh_state SET next_check_at = now() WHERE account_id IN ('{ids[0]}', '{ids[1]}')");
        H.Fake.Shopify.PlatformFault = FakeFault.Unauthorized;
        var before = H.Fake.Shopify.TotalCalls;

        var (summary, logs) = await H.RunCycleAsync();

        // Two calls for each due store (the second confirms the 401), one for each of the five stores asked again.
        Assert.Equal("Shopify: 0/2 validated, 0 deactivated, 2 failed", summary.Platforms[1].ToString());
        Assert.Equal(2 * 2 + 5, H.Fake.Shopify.TotalCalls - before);
        foreach (var id in ids)
        {
            Assert.True((await H.Db.GetShopifyStoreAsync(id)).IsActive);
        }

        var error = Assert.Single(logs, l => l.Id.Id == 307);
        Assert.Equal(LogLevel.Error, error.Level);
        Assert.StartsWith("Shopify: 2 stores were rejected (401, confirmed) in this cycle, and so were 5 of 5 stores whose last check passed", error.Message, StringComparison.Ordinal);
        Assert.Equal(2, logs.Count(l => l.Message.Contains("failed (deactivation_paused, transient)", StringComparison.Ordinal)));
        // The stores asked again keep the state their last check gave them.
        Assert.Equal(38L, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE platform = 'shopify' AND last_error IS NULL"));
    }

    [Fact]
    public async Task Validate_AStoreThatUninstalled_AmongStoresThatPassed_IsDeactivated_AfterFiveOfThemAreAskedAgain()
    {
        var ids = await ValidatedStoresAsync(40);
        H.Fake.Shopify.RevokeAccessToken("fine-7.myshopify.com");
        await H.Db.ExecuteAsync($"UPDATE token_refresh_state SET next_check_at = now() WHERE account_id = '{ids[7]}'");
        var before = H.Fake.Shopify.TotalCalls;

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal("Shopify: 0/1 validated, 1 deactivated, 0 failed", summary.Platforms[1].ToString());
        Assert.Equal(2 + 5, H.Fake.Shopify.TotalCalls - before);
        Assert.False((await H.Db.GetShopifyStoreAsync(ids[7])).IsActive);
        Assert.DoesNotContain(logs, l => l.Id.Id == 307);
    }

    [Theory]
    [InlineData("ETSY_CLIENT_ID", "wrong-keystring")]
    [InlineData("ETSY_CLIENT_SECRET", "wrong-secret")]
    public async Task Etsy_CredentialsRefused_StopsThePlatformForTheCycle_WithOneError_AndNoAccountBacksOff(string setting, string value)
    {
        var users = new List<(Guid Id, string Refresh)>();
        for (var i = 0; i < 40; i++)
        {
            var refresh = H.Fake.Etsy.AddAccount(i + 1);
            users.Add((await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1)), refresh));
        }

        H.Settings[setting] = value;

        var (summary, logs) = await H.RunCycleAsync();

        var etsy = summary.Platforms[0];
        Assert.True(H.Fake.Etsy.TotalCalls <= 16, $"{H.Fake.Etsy.TotalCalls} calls were sent with refused credentials");
        Assert.Equal(H.Fake.Etsy.TotalCalls, etsy.Failed);
        // On a busy machine a claimed call whose permit's moment passed asks for another, and is skipped ("stopped before it
        // was sent") once the platform has stopped: not sent either, and left as it was.
        Assert.Equal(40 - etsy.Failed - etsy.Skipped, etsy.LeftOver);
        Assert.True(etsy.Skipped <= 16, $"{etsy.Skipped} skipped");
        var error = Assert.Single(logs, l => l.Message.StartsWith("Etsy: the platform refused the app's credentials", StringComparison.Ordinal));
        Assert.Contains("check ETSY_CLIENT_ID and ETSY_CLIENT_SECRET", error.Message, StringComparison.Ordinal);
        foreach (var (id, refresh) in users)
        {
            Assert.Null(await H.Db.GetStateAsync("etsy", id));
            Assert.Equal(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        }
    }

    [Fact]
    public async Task ShopifyRefresh_CredentialsRefused_StopsThePlatformForTheCycle()
    {
        await H.Db.AddExpiringColumnsAsync();
        for (var i = 0; i < 20; i++)
        {
            var shop = $"exp-{i}.myshopify.com";
            var (access, refresh) = H.Fake.Shopify.AddExpiringStore(shop);
            await H.Db.AddExpiringStoreAsync(shop, access, refresh, DateTimeOffset.UtcNow.AddMinutes(1), DateTimeOffset.UtcNow.AddDays(9));
        }

        H.Settings["SHOPIFY_API_SECRET"] = "wrong-secret";

        var (summary, logs) = await H.RunCycleAsync();

        var expiring = summary.Platforms[2];
        Assert.True(expiring.Failed <= 16 && expiring.Failed + expiring.LeftOver == 20, expiring.ToString());
        Assert.Single(logs, l => l.Message.StartsWith("Shopify expiring: the platform refused the app's credentials (invalid_client): check SHOPIFY_API_KEY and SHOPIFY_API_SECRET", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Etsy_AnExceptionAfterTheRequestWasSent_IsAnUnknownOutcome_TheTokenLeftAsItIs()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Etsy.SetFault(refresh, FakeFault.RotateThenBadCharset, times: 1);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 0/1 refreshed, 1 failed", summary.Platforms[0].ToString());
        Assert.Equal(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        var state = (await H.Db.GetStateAsync("etsy", id))!;
        Assert.Equal("unexpected_error", state.LastError);
        Assert.NotNull(state.UnknownOutcomeAt);
        var error = Assert.Single(logs, l => l.Message.Contains("the outcome is unknown", StringComparison.Ordinal));
        Assert.Contains(id.ToString(), error.Message, StringComparison.Ordinal);
        Assert.NotNull(error.Exception);
    }

    [Fact]
    public async Task AbsurdWaits_AreClampedToAnHour_WithoutAnException()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        var user = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Etsy.SetFault(refresh, FakeFault.HugeRetryAfter);
        H.Fake.Shopify.AddStore("slow.myshopify.com", "shpat_slow");
        var store = await H.Db.AddShopifyStoreAsync("slow.myshopify.com", "shpat_slow");
        H.Fake.Shopify.SetFault("slow.myshopify.com", FakeFault.AbsurdThrottle);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Contains(logs, l => l.Message.Contains("failed (rate_limited, transient)", StringComparison.Ordinal));
        Assert.Contains(logs, l => l.Message.Contains("failed (throttled, transient)", StringComparison.Ordinal));
        Assert.DoesNotContain(logs, l => l.Exception is not null);
        Assert.InRange((await H.Db.GetStateAsync("shopify", store))!.NextAttemptAt!.Value, DateTime.UtcNow.AddMinutes(59), DateTime.UtcNow.AddMinutes(61));
        Assert.InRange((await H.Db.GetStateAsync("etsy", user))!.NextAttemptAt!.Value, DateTime.UtcNow.AddMinutes(59), DateTime.UtcNow.AddMinutes(61));
        Assert.Equal(2, summary.Platforms.Sum(p => p.Failed));
    }
}
