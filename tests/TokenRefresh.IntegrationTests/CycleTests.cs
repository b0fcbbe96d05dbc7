using System.Reflection;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.Functions;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

public sealed class CycleTests : HarnessTests
{


    /// <summary>Three due Etsy users (one revoked) and five active stores (one revoked, one locked).</summary>
    private async Task<List<string>> SeedMixedAsync()
    {
        var secrets = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var refresh = H.Fake.Etsy.AddAccount(100 + i);
            secrets.Add(refresh);
            await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(i - 1), accessToken: $"etsy-old-access-{i}");
            secrets.Add($"etsy-old-access-{i}");
            if (i == 2)
            {
                H.Fake.Etsy.SetFault(refresh, FakeFault.InvalidGrant);
            }
        }

        for (var i = 0; i < 5; i++)
        {
            var shop = $"shop{i}.myshopify.com";
            var token = $"shpat_secret_{i}_{Guid.NewGuid():N}";
            secrets.Add(token);
            H.Fake.Shopify.AddStore(shop, token);
            await H.Db.AddShopifyStoreAsync(shop, token);
        }

        H.Fake.Shopify.RevokeAccessToken("shop3.myshopify.com");
        H.Fake.Shopify.SetFault("shop4.myshopify.com", FakeFault.Locked);
        return secrets;
    }

    [Fact]
    public async Task Cycle_MixedOutcomes_LogsStartFoundPerAccountAndOneSummaryEvent()
    {
        await SeedMixedAsync();
        var watch = System.Diagnostics.Stopwatch.StartNew();

        var (summary, logs) = await H.RunCycleAsync();

        watch.Stop();
        Assert.Equal("Etsy: 2/3 refreshed, 1 failed; Shopify: 3/5 validated, 1 deactivated, 1 failed", summary.ToString());
        Assert.Contains(logs, l => l.Message == "Refresh cycle started");
        Assert.Contains(logs, l => l.Message == "Etsy: found 3 accounts due");
        Assert.Contains(logs, l => l.Message == "Shopify: found 5 accounts due");
        Assert.Equal(8, logs.Count(l => l.Level >= LogLevel.Information && l.Scopes.OfType<Dictionary<string, object>>().Any(s => s.ContainsKey("AccountId"))
            && l.Message.Contains(": ", StringComparison.Ordinal) && !l.Message.Contains("assuming", StringComparison.Ordinal)));
        var end = Assert.Single(logs, l => l.Message.StartsWith("Refresh cycle completed in ", StringComparison.Ordinal));
        Assert.Equal(LogLevel.Warning, end.Level);
        var counts = Assert.IsType<Dictionary<string, object>>(Assert.Single(end.Scopes));
        Assert.Equal(3, counts["EtsyFound"]);
        Assert.Equal(2, counts["EtsyRefreshed"]);
        Assert.Equal(1, counts["EtsyFailed"]);
        Assert.Equal(5, counts["ShopifyFound"]);
        Assert.Equal(3, counts["ShopifyValidated"]);
        Assert.Equal(1, counts["ShopifyDeactivated"]);
        Assert.Equal(1, counts["ShopifyFailed"]);
        // The cycle's own time, as the summary holds it: more than nothing (it called two platforms), within what the test saw.
        var durationMs = double.Parse(end.GetStructuredStateValue("DurationMs")!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(Math.Round(summary.Duration.TotalMilliseconds), durationMs);
        Assert.InRange(durationMs, 1, watch.ElapsedMilliseconds);
    }

    [Fact]
    public async Task Cycle_DatabaseUnreachable_FailsTheCycleWithItsStackTraceLogged()
    {
        H.Settings["DATABASE_URL"] = "postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=2";

        using var host = H.BuildHost();
        var e = await Assert.ThrowsAsync<CycleFailedException>(() => host.Services.GetRequiredService<RefreshCycle>().RunAsync());

        Assert.IsAssignableFrom<Npgsql.NpgsqlException>(e.InnerException);
        var logs = host.Services.GetFakeLogCollector().GetSnapshot();
        Assert.Contains(logs, l => l.Level == LogLevel.Error && l.Exception is Npgsql.NpgsqlException && l.Exception.StackTrace is not null);
        Assert.Contains(logs, l => l.Level == LogLevel.Error && l.Message.Contains("cycle failed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Function_ConstructedFromTheWiring_RunsTheCycle()
    {
        var refresh = H.Fake.Etsy.AddAccount(5);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        using var host = H.BuildHost();
        var function = ActivatorUtilities.CreateInstance<RefreshTokensFunction>(host.Services);

        await function.RunAsync(new TimerInfo { IsPastDue = false }, CancellationToken.None);

        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        Assert.Contains(host.Services.GetFakeLogCollector().GetSnapshot(), l => l.Message.Contains("Etsy: 1/1 refreshed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Function_DatabaseUnreachable_ThrowsSoTheHostRetriesAfterSixtySeconds()
    {
        H.Settings["DATABASE_URL"] = "postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=2";
        using var host = H.BuildHost();
        var function = ActivatorUtilities.CreateInstance<RefreshTokensFunction>(host.Services);

        await Assert.ThrowsAsync<CycleFailedException>(() => function.RunAsync(new TimerInfo(), CancellationToken.None));

        var method = typeof(RefreshTokensFunction).GetMethod(nameof(RefreshTokensFunction.RunAsync))!;
        var retry = method.GetCustomAttribute<FixedDelayRetryAttribute>()!;
        Assert.Equal("00:01:00", retry.DelayInterval);
        var trigger = method.GetParameters()[0].GetCustomAttribute<TimerTriggerAttribute>()!;
        Assert.Equal("%REFRESH_SCHEDULE%", trigger.Schedule);
    }
}
