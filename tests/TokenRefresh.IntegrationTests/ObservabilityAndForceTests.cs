using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>The metrics the service records, how the CLI shows and exports them, and forcing one account.</summary>
public sealed class ObservabilityAndForceTests : HarnessTests
{


    private async Task SeedMixedAsync()
    {
        await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(1), DateTimeOffset.UtcNow.AddMinutes(1));
        var revoked = H.Fake.Etsy.AddAccount(2);
        await H.Db.AddEtsyUserAsync(revoked, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Etsy.Revoke(revoked);
        H.Fake.Shopify.AddStore("ok.myshopify.com", "shpat_ok");
        await H.Db.AddShopifyStoreAsync("ok.myshopify.com", "shpat_ok");
        H.Fake.Shopify.AddStore("gone.myshopify.com", "shpat_gone");
        await H.Db.AddShopifyStoreAsync("gone.myshopify.com", "shpat_gone");
        H.Fake.Shopify.RevokeAccessToken("gone.myshopify.com");
    }

    [Fact]
    public async Task Cycle_RecordsOutcomesDurationsLatencyLeftOverAndReauth()
    {
        await SeedMixedAsync();
        using var host = H.BuildHost();
        var meters = host.Services.GetRequiredService<IMeterFactory>();
        using var accounts = new MetricCollector<long>(meters, TokenRefreshMetrics.MeterName, "tokenrefresh.accounts");
        using var cycles = new MetricCollector<double>(meters, TokenRefreshMetrics.MeterName, "tokenrefresh.cycle.duration");
        using var calls = new MetricCollector<double>(meters, TokenRefreshMetrics.MeterName, "tokenrefresh.platform.call.duration");
        using var leftOver = new MetricCollector<long>(meters, TokenRefreshMetrics.MeterName, "tokenrefresh.accounts.left_over");
        using var reauth = new MetricCollector<long>(meters, TokenRefreshMetrics.MeterName, "tokenrefresh.accounts.needs_reauth");

        await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        await host.Services.GetRequiredService<RefreshCycle>().RunAsync();

        long Count(string platform, string outcome) => accounts.GetMeasurementSnapshot()
            .Where(m => Equals(m.Tags["platform"], platform) && Equals(m.Tags["outcome"], outcome)).Sum(m => m.Value);
        Assert.Equal(1, Count("Etsy", "refreshed"));
        Assert.Equal(1, Count("Etsy", "failed"));
        Assert.Equal(2, Count("Shopify", "validated")); // the valid store, in both cycles
        Assert.Equal(1, Count("Shopify", "deactivated"));
        Assert.Contains(accounts.GetMeasurementSnapshot(), m => Equals(m.Tags["failure"], "permanent"));
        Assert.Equal(2, cycles.GetMeasurementSnapshot().Count);
        Assert.All(cycles.GetMeasurementSnapshot(), m => Assert.True(m.Value > 0));
        Assert.Equal(2, calls.GetMeasurementSnapshot().Count(m => Equals(m.Tags["platform"], "Etsy") && Equals(m.Tags["operation"], "refresh")));
        Assert.Contains(calls.GetMeasurementSnapshot(), m => Equals(m.Tags["operation"], "validate") && Equals(m.Tags["result"], "rejected"));
        // Each platform of each cycle says what it left for the next one: here nothing, for Etsy and Shopify, twice.
        Assert.Equal([("Etsy", 0L), ("Shopify", 0L), ("Etsy", 0L), ("Shopify", 0L)], leftOver.GetMeasurementSnapshot().Select(m => (m.Tags["platform"] as string, m.Value)));
        // After the first cycle flagged the revoked Etsy user, the second cycle reports it.
        Assert.Equal(1, reauth.LastMeasurement!.Value);
        Assert.Equal("Etsy", reauth.LastMeasurement.Tags["platform"]);
    }

    [Fact]
    public async Task Cycle_BudgetSpent_CountsTheLeftOver()
    {
        for (var i = 0; i < 6; i++)
        {
            await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(i + 1), DateTimeOffset.UtcNow.AddMinutes(1));
        }

        H.Fake.Latency = TimeSpan.FromMilliseconds(2500);
        H.Settings["CYCLE_BUDGET_SECONDS"] = "5";
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "1";
        H.Settings["HTTP_TIMEOUT_SECONDS"] = "10";
        using var host = H.BuildHost();
        using var leftOver = new MetricCollector<long>(host.Services.GetRequiredService<IMeterFactory>(), TokenRefreshMetrics.MeterName, "tokenrefresh.accounts.left_over");

        var summary = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();

        var etsy = summary.Platforms[0];
        Assert.InRange(etsy.Succeeded, 2, 3);
        Assert.Equal(6 - etsy.Succeeded, etsy.LeftOver);
        Assert.Equal(etsy.LeftOver, leftOver.GetMeasurementSnapshot().Where(m => Equals(m.Tags["platform"], "Etsy")).Sum(m => m.Value));
    }

    [Fact]
    public async Task Cli_MetricsFlag_PrintsTheMetricsAfterTheCycle()
    {
        await SeedMixedAsync();

        var (code, stdout, _) = await CliProcess.RunAsync(["once", "--metrics"], H.Settings);

        Assert.Equal(1, code);
        Assert.Contains("Metrics (meter TokenRefresh", stdout, StringComparison.Ordinal);
        Assert.Matches(@"tokenrefresh\.accounts\s+failure=none outcome=refreshed platform=Etsy\s+1", stdout);
        Assert.Matches(@"tokenrefresh\.accounts\s+failure=none outcome=deactivated platform=Shopify\s+1", stdout);
        Assert.Matches(@"tokenrefresh\.cycle\.duration\s+result=ok\s+count 1, mean [0-9.]+ s", stdout);
        Assert.Matches(@"tokenrefresh\.platform\.call\.duration\s+operation=refresh platform=Etsy result=ok\s+count 1", stdout);
    }

    [Fact]
    public async Task Cli_OtlpEndpointConfigured_ExportsTheMetrics()
    {
        await SeedMixedAsync();
        var otlp = new OtlpReceiver();
        H.Settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.Endpoint;
        H.Settings["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";

        var (code, _, _) = await CliProcess.RunAsync(["once"], H.Settings);
        await otlp.DisposeAsync();

        Assert.Equal(1, code);
        var metrics = Assert.Single(otlp.Received, r => r.Path == "/v1/metrics");
        var text = Encoding.UTF8.GetString(metrics.Body);
        Assert.Contains("tokenrefresh.accounts", text, StringComparison.Ordinal);
        Assert.Contains("tokenrefresh.cycle.duration", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Force_EtsyUserNotDueOrBackingOff_IsRefreshedNowThroughTheLock()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(50));
        await H.Db.ExecuteAsync(
            "INSERT INTO token_refresh_state (platform, account_id, consecutive_failures, next_attempt_at, token_hash) VALUES ('etsy', @id, 3, now() + interval '1 hour', encode(sha256(convert_to(@refresh, 'UTF8')), 'hex'))",
            new { id = id.ToString(), refresh });

        var (code, stdout, stderr) = await CliProcess.RunAsync(["refresh", "--etsy-user", id.ToString()], H.Settings);

        Assert.Equal(0, code);
        Assert.Equal($"Etsy account {id}: refreshed", stdout.Trim());
        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        Assert.Equal(0, (await H.Db.GetStateAsync("etsy", id))!.ConsecutiveFailures);
        Assert.DoesNotContain(refresh, stdout + stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Force_ShopValidatesOrRefreshes_FailureExitsOne_UnknownExitsTwo()
    {
        await H.Db.AddExpiringColumnsAsync();
        H.Fake.Shopify.AddStore("classic.myshopify.com", "shpat_classic");
        await H.Db.AddShopifyStoreAsync("classic.myshopify.com", "shpat_classic");
        var (access, refresh) = H.Fake.Shopify.AddExpiringStore("exp.myshopify.com");
        var expiring = await H.Db.AddExpiringStoreAsync("exp.myshopify.com", access, refresh, DateTimeOffset.UtcNow.AddMinutes(50), DateTimeOffset.UtcNow.AddDays(80));
        H.Fake.Shopify.AddStore("locked.myshopify.com", "shpat_locked");
        await H.Db.AddShopifyStoreAsync("locked.myshopify.com", "shpat_locked");
        H.Fake.Shopify.SetFault("locked.myshopify.com", FakeFault.Locked);

        var classic = await CliProcess.RunAsync(["refresh", "--shop", "classic.myshopify.com"], H.Settings);
        var exp = await CliProcess.RunAsync(["refresh", "--shop", "exp.myshopify.com"], H.Settings);
        var locked = await CliProcess.RunAsync(["refresh", "--shop", "locked.myshopify.com"], H.Settings);
        var unknown = await CliProcess.RunAsync(["refresh", "--shop", "nope.myshopify.com"], H.Settings);
        var badId = await CliProcess.RunAsync(["refresh", "--etsy-user", "not-a-uuid"], H.Settings);

        Assert.Equal((0, "validated"), (classic.ExitCode, classic.Stdout.Trim().Split(": ")[^1]));
        Assert.Equal((0, "refreshed"), (exp.ExitCode, exp.Stdout.Trim().Split(": ")[^1]));
        Assert.Equal(H.Fake.Shopify.CurrentRefreshToken("exp.myshopify.com"), (await H.Db.GetExpiringStoreAsync(expiring)).RefreshToken);
        Assert.Equal(1, locked.ExitCode);
        Assert.Contains("failed (shop_locked_423)", locked.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("No active Shopify store", unknown.Stderr, StringComparison.Ordinal);
        Assert.Equal(2, badId.ExitCode);
    }
}
