using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>Shopify's cut-off for non-expiring offline tokens: the countdown before it, and the day itself.</summary>
public sealed class ShopifyCutoffTests : HarnessTests
{
    private static readonly DateOnly Today = DateOnly.FromDateTime(DateTime.UtcNow);

    private void CutoffIn(int days) => H.Settings["SHOPIFY_NON_EXPIRING_CUTOFF"] = Day(days);

    private static string Day(int fromToday) => Today.AddDays(fromToday).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    private async Task AddStoresAsync(int count, string prefix = "classic")
    {
        for (var i = 1; i <= count; i++)
        {
            var token = $"shpat_{Guid.NewGuid():N}";
            H.Fake.Shopify.AddStore($"{prefix}{i}.myshopify.com", token);
            await H.Db.AddShopifyStoreAsync($"{prefix}{i}.myshopify.com", token);
        }
    }

    private async Task AddExpiringStoreAsync(string shop)
    {
        var (access, refresh) = H.Fake.Shopify.AddExpiringStore(shop);
        await H.Db.AddExpiringStoreAsync(shop, access, refresh, DateTimeOffset.UtcNow.AddMinutes(45), DateTimeOffset.UtcNow.AddDays(80));
    }

    private static async Task<IReadOnlyList<FakeLogRecord>> CycleAsync(Microsoft.Extensions.Hosting.IHost host)
    {
        await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        return host.Services.GetFakeLogCollector().GetSnapshot();
    }

    private async Task<JsonElement?> StatusCutoffAsync()
    {
        var (code, json, stderr) = await CliProcess.RunAsync(["status", "--json"], H.Settings);
        Assert.True(code == 0, stderr);
        var shopify = JsonDocument.Parse(json).RootElement.GetProperty("platforms").EnumerateArray().Single(p => p.GetProperty("platform").GetString() == "Shopify");
        return shopify.TryGetProperty("nonExpiringCutoff", out var cutoff) ? cutoff : null;
    }

    [Fact]
    public async Task Countdown_WithinThirtyDays_OneWarningAnHourForAllReplicas_AndStatusShowsIt()
    {
        await H.Db.AddExpiringColumnsAsync();
        CutoffIn(10);
        await AddStoresAsync(3);
        await AddExpiringStoreAsync("moved.myshopify.com");
        using var one = H.BuildHost();
        using var two = H.BuildHost();

        await CycleAsync(one);
        await CycleAsync(two);
        await CycleAsync(one);
        var said = (await CycleAsync(two)).Concat(one.Services.GetFakeLogCollector().GetSnapshot()).Where(l => l.Id.Name == "Ahead").ToList();
        // An hour later the replica whose cycle comes first says it again.
        await H.Db.ExecuteAsync("UPDATE token_refresh_notices SET said_at = said_at - interval '61 minutes'");
        var later = (await CycleAsync(two)).Concat(one.Services.GetFakeLogCollector().GetSnapshot()).Count(l => l.Id.Name == "Ahead");
        var text = await CliProcess.RunAsync(["status"], H.Settings);
        var json = await StatusCutoffAsync();

        var warning = Assert.Single(said);
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Equal(
            $"Shopify non-expiring tokens: 3 active stores still hold one, and Shopify stops accepting them on {Day(10)} (10 days left; SHOPIFY_NON_EXPIRING_CUTOFF). " +
            "Run `tokenrefresh shopify migrate-expiring --all --dry-run`, then `tokenrefresh shopify migrate-expiring --all --yes`", warning.Message);
        Assert.Equal(2, later);
        Assert.Contains($"Shopify non-expiring tokens: 3 active stores still hold a non-expiring offline token; Shopify refuses them from {Day(10)} (10 days left). Run `tokenrefresh shopify migrate-expiring --all --dry-run`", text.Stdout, StringComparison.Ordinal);
        Assert.Equal((Day(10), 10, 3L, true, "tokenrefresh shopify migrate-expiring --all --dry-run"), (json!.Value.GetProperty("date").GetString(),
            json.Value.GetProperty("daysLeft").GetInt32(), json.Value.GetProperty("nonExpiringStores").GetInt64(),
            json.Value.GetProperty("expiringColumns").GetBoolean(), json.Value.GetProperty("command").GetString()));
    }

    [Fact]
    public async Task Countdown_MoreThanThirtyDaysAhead_StatusCountsButNoWarning_AndNoneTurnsItOff()
    {
        await H.Db.AddExpiringColumnsAsync();
        await AddStoresAsync(2);
        CutoffIn(31);
        using var early = H.BuildHost();
        var earlyLogs = await CycleAsync(early);
        var earlyStatus = await StatusCutoffAsync();
        H.Settings["SHOPIFY_NON_EXPIRING_CUTOFF"] = "none";
        using var exempt = H.BuildHost();
        var exemptLogs = await CycleAsync(exempt);
        var exemptStatus = await StatusCutoffAsync();
        var exemptText = await CliProcess.RunAsync(["status"], H.Settings);

        Assert.DoesNotContain(earlyLogs, l => l.Message.Contains("Shopify non-expiring tokens", StringComparison.Ordinal));
        Assert.Equal((31, 2L), (earlyStatus!.Value.GetProperty("daysLeft").GetInt32(), earlyStatus.Value.GetProperty("nonExpiringStores").GetInt64()));
        Assert.DoesNotContain(exemptLogs, l => l.Message.Contains("Shopify non-expiring tokens", StringComparison.Ordinal));
        Assert.Null(exemptStatus);
        Assert.DoesNotContain("non-expiring", exemptText.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_notices WHERE notice = 'shopify_non_expiring_cutoff'"));
    }

    [Fact]
    public async Task Countdown_WithoutTheExpiringColumns_SaysToApplyTheScriptFirst()
    {
        CutoffIn(5);
        await AddStoresAsync(2);

        var (_, logs) = await H.RunCycleAsync();
        var text = await CliProcess.RunAsync(["status"], H.Settings);
        var json = await StatusCutoffAsync();

        var warning = Assert.Single(logs, l => l.Id.Name == "Ahead");
        Assert.Contains("2 active stores still hold one", warning.Message, StringComparison.Ordinal);
        Assert.Contains("Apply scripts/sql/shopify-expiring-tokens.sql (then scripts/sql/service-grants.sql), then run `tokenrefresh shopify migrate-expiring --all --dry-run`", warning.Message, StringComparison.Ordinal);
        Assert.Contains("(5 days left). Apply scripts/sql/shopify-expiring-tokens.sql", text.Stdout, StringComparison.Ordinal);
        Assert.Equal((false, "scripts/sql/shopify-expiring-tokens.sql"), (json!.Value.GetProperty("expiringColumns").GetBoolean(), json.Value.GetProperty("firstApply").GetString()));
    }

    [Fact]
    public async Task TheDay_AWaveOfRefusals_OneErrorLineWithTheCount_NoneDeactivated_BackedOff_ThenEveryStoreMoved()
    {
        await H.Db.AddExpiringColumnsAsync();
        CutoffIn(-1);
        H.Fake.Shopify.NonExpiringCutoff = DateTimeOffset.UtcNow.AddDays(-1);
        await AddStoresAsync(60);
        await AddExpiringStoreAsync("moved.myshopify.com");

        var (day, logs) = await H.RunCycleAsync();
        var (next, _) = await H.RunCycleAsync();
        var active = await H.Db.ScalarAsync<long>("SELECT count(*) FROM shopify_stores WHERE is_active");
        var flagged = await H.Db.ScalarAsync<long>(
            "SELECT count(*) FROM token_refresh_needs_reauth WHERE platform = 'shopify' AND reason = 'non_expiring_token_refused'");
        var notBackingOff = await H.Db.ScalarAsync<long>(
            "SELECT count(*) FROM token_refresh_state WHERE platform = 'shopify' AND (next_attempt_at IS NULL OR next_attempt_at <= now())");
        var migrate = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--all", "--yes"], H.Settings);
        var (after, afterLogs) = await H.RunCycleAsync();

        Assert.Equal("Shopify: 0/60 validated, 0 deactivated, 60 failed", day.Platforms[1].ToString());
        var line = Assert.Single(logs, l => l.Level >= LogLevel.Error && l.Message.Contains("non_expiring_token_refused", StringComparison.Ordinal));
        Assert.StartsWith("Shopify: 60 stores' non-expiring offline tokens were refused (non_expiring_token_refused), e.g. ", line.Message, StringComparison.Ordinal);
        Assert.Contains("`tokenrefresh shopify migrate-expiring --all --dry-run`", line.Message, StringComparison.Ordinal);
        // Each store's own line is at Debug: 60 of them, none above.
        Assert.Equal(60, logs.Count(l => l.Id.Name == "AccountFailed" && l.Level == LogLevel.Debug));
        Assert.DoesNotContain(logs, l => l.Id.Name == "AccountFailed" && l.Level > LogLevel.Debug);
        Assert.Single(logs, l => l.Id.Name == "Passed" && l.Level == LogLevel.Error && l.Message.Contains("60 active stores still hold one", StringComparison.Ordinal));
        Assert.Equal((61, 60, 0), (active, flagged, notBackingOff));
        // Backed off: the next cycle calls none of them.
        Assert.Equal(0, next.Platforms[1].Found);
        Assert.Equal(60, H.Fake.Shopify.TotalCalls - 60); // 60 validations, then 60 exchanges
        // The exchange still takes the refused tokens: every store moved, none of them flagged any more.
        Assert.True(migrate.ExitCode == 0, migrate.Stdout + migrate.Stderr);
        Assert.Contains("60 store(s) to migrate: migrated 60, already migrated 1,", migrate.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_needs_reauth"));
        Assert.Equal("Shopify: 0/0 validated, 0 deactivated, 0 failed", after.Platforms[1].ToString());
        Assert.DoesNotContain(afterLogs, l => l.Id.Name == "Passed");
    }
}
