using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>Shopify's expiring offline tokens: refreshed like Etsy's, and stores migrated to them.</summary>
public sealed class ShopifyExpiringTests : HarnessTests
{


    private async Task<(Guid Id, string Access, string Refresh)> ExpiringStoreAsync(string shop, TimeSpan expiresIn, TimeSpan? refreshExpiresIn = null)
    {
        var (access, refresh) = H.Fake.Shopify.AddExpiringStore(shop);
        var now = DateTimeOffset.UtcNow;
        var id = await H.Db.AddExpiringStoreAsync(shop, access, refresh, now + expiresIn, now + (refreshExpiresIn ?? TimeSpan.FromDays(80)));
        return (id, access, refresh);
    }

    [Fact]
    public async Task Cycle_ExpiringStoreDue_RefreshedWithBothExpiries_InsteadOfValidated()
    {
        await H.Db.AddExpiringColumnsAsync();
        var (id, _, refresh) = await ExpiringStoreAsync("exp.myshopify.com", TimeSpan.FromMinutes(4));
        H.Fake.Shopify.AddStore("classic.myshopify.com", "shpat_classic");
        await H.Db.AddShopifyStoreAsync("classic.myshopify.com", "shpat_classic");
        var before = DateTime.UtcNow;

        var (summary, _) = await H.RunCycleAsync();

        var row = await H.Db.GetExpiringStoreAsync(id);
        Assert.Equal(H.Fake.Shopify.CurrentAccessToken("exp.myshopify.com"), row.AccessToken);
        Assert.Equal(H.Fake.Shopify.CurrentRefreshToken("exp.myshopify.com"), row.RefreshToken);
        Assert.NotEqual(refresh, row.RefreshToken);
        Assert.InRange(row.ExpiresAt!.Value, before.AddSeconds(3595), DateTime.UtcNow.AddSeconds(3605));
        Assert.InRange(row.RefreshExpiresAt!.Value, before.AddSeconds(7776000 - 5), DateTime.UtcNow.AddSeconds(7776000 + 5));
        Assert.True(row.IsActive);
        Assert.Equal("Shopify: 1/1 validated, 0 deactivated, 0 failed; Shopify expiring: 1/1 refreshed, 0 failed", string.Join("; ", summary.Platforms.Skip(1)));
        Assert.Equal(0, H.Fake.Shopify.GraphQlCallsFor("exp.myshopify.com"));
        Assert.Equal(1, H.Fake.Shopify.GraphQlCallsFor("classic.myshopify.com"));
    }

    [Fact]
    public async Task Cycle_ExpiringStoreNotDue_IsNeitherRefreshedNorValidated()
    {
        await H.Db.AddExpiringColumnsAsync();
        var (id, access, _) = await ExpiringStoreAsync("later.myshopify.com", TimeSpan.FromMinutes(45));

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(access, (await H.Db.GetExpiringStoreAsync(id)).AccessToken);
        Assert.Equal(0, H.Fake.Shopify.OAuthCallsFor("later.myshopify.com") + H.Fake.Shopify.GraphQlCallsFor("later.myshopify.com"));
        Assert.Equal(0, summary.Platforms[2].Found);
    }

    [Fact]
    public async Task Cycle_RevokedRefreshToken_FlagsReauthorisation_StoreStaysActive_NotCalledAgain()
    {
        await H.Db.AddExpiringColumnsAsync();
        var (id, access, refresh) = await ExpiringStoreAsync("revoked.myshopify.com", TimeSpan.FromMinutes(-5));
        H.Fake.Shopify.RevokeRefreshToken("revoked.myshopify.com");

        var (first, logs) = await H.RunCycleAsync();
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = NULL");
        var (second, _) = await H.RunCycleAsync();

        Assert.Equal("Shopify expiring: 0/1 refreshed, 1 failed", first.Platforms[2].ToString());
        Assert.Contains(logs, l => l.Message.Contains("revoked.myshopify.com", StringComparison.Ordinal) && l.Message.Contains("needs re-authorisation", StringComparison.Ordinal));
        var row = await H.Db.GetExpiringStoreAsync(id);
        Assert.Equal((access, refresh, true), (row.AccessToken, row.RefreshToken, row.IsActive));
        Assert.True((await H.Db.GetStateAsync("shopify_refresh", id))!.NeedsReauth);
        Assert.Equal(0, second.Platforms[2].Found);
        Assert.Equal(1, H.Fake.Shopify.OAuthCallsFor("revoked.myshopify.com"));
    }

    [Fact]
    public async Task Cycle_LostAnswerThenRetryWithinShopifysGrace_StoresTheNewPair()
    {
        await H.Db.AddExpiringColumnsAsync();
        var (id, _, refresh) = await ExpiringStoreAsync("lossy.myshopify.com", TimeSpan.FromMinutes(2));
        H.Fake.Shopify.SetFault("lossy.myshopify.com", FakeFault.RotateThenReset, times: 1);

        var (first, _) = await H.RunCycleAsync();
        var lost = await H.Db.GetStateAsync("shopify_refresh", id);
        // Let the backoff and the in-flight wait pass; the old refresh token is still usable: its replacement was never used.
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = NULL, unknown_outcome_at = unknown_outcome_at - interval '10 minutes'");
        var (second, _) = await H.RunCycleAsync();

        Assert.Equal(1, first.Platforms[2].Failed);
        Assert.Equal("network_error", lost!.LastError);
        Assert.NotNull(lost.UnknownOutcomeAt);
        Assert.Equal(1, second.Platforms[2].Succeeded);
        var row = await H.Db.GetExpiringStoreAsync(id);
        Assert.Equal(H.Fake.Shopify.CurrentRefreshToken("lossy.myshopify.com"), row.RefreshToken);
        Assert.Equal(2, H.Fake.Shopify.RefreshCallsFor(refresh));
        Assert.Equal(0, (await H.Db.GetStateAsync("shopify_refresh", id))!.ConsecutiveFailures);
    }

    [Fact]
    public async Task Cycle_WithoutTheColumns_SaysOnceThatSupportIsOff_AndValidatesAsBefore()
    {
        H.Fake.Shopify.AddStore("classic.myshopify.com", "shpat_classic");
        await H.Db.AddShopifyStoreAsync("classic.myshopify.com", "shpat_classic");
        using var host = H.BuildHost();

        var first = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        var second = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();

        var logs = host.Services.GetFakeLogCollector().GetSnapshot();
        var off = Assert.Single(logs, l => l.Message.Contains("support is off", StringComparison.Ordinal));
        Assert.Equal(LogLevel.Warning, off.Level);
        Assert.Contains("refresh_token, token_expires_at, refresh_token_expires_at", off.Message, StringComparison.Ordinal);
        Assert.Equal("Etsy: 0/0 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed", first.ToString());
        Assert.Equal(first.ToString(), second.ToString());
    }

    [Fact]
    public async Task Cycle_RefreshTokenEndingWithinSevenDays_OneWarningPerCycle_AndShownInStatus()
    {
        await H.Db.AddExpiringColumnsAsync();
        var (id, _, _) = await ExpiringStoreAsync("ending.myshopify.com", TimeSpan.FromMinutes(50), TimeSpan.FromDays(3));
        var etsy = await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(1), DateTimeOffset.UtcNow.AddMinutes(50));
        await H.Db.ExecuteAsync(
            "INSERT INTO token_refresh_state (platform, account_id, last_success_at) VALUES ('etsy', @etsy, now() - interval '85 days')", new { etsy = etsy.ToString() });
        using var host = H.BuildHost();

        await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        var (_, json, _) = await CliProcess.RunAsync(["status", "--json"], H.Settings);

        var warnings = host.Services.GetFakeLogCollector().GetSnapshot().Where(l => l.Message.Contains("its refresh token expires at", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, warnings.Count(w => w.Message.Contains(id.ToString(), StringComparison.Ordinal)));
        Assert.Equal(2, warnings.Count(w => w.Message.Contains(etsy.ToString(), StringComparison.Ordinal)));
        Assert.Contains($"\"id\": \"{id}\"", json, StringComparison.Ordinal);
        Assert.Contains($"\"id\": \"{etsy}\"", json, StringComparison.Ordinal);
        Assert.Equal(2, json.Split("\"refresh_token_expiring\"").Length - 1);
    }

    [Fact]
    public async Task MigrateExpiring_DryRunThenYesThenRepeat()
    {
        await H.Db.AddExpiringColumnsAsync();
        H.Fake.Shopify.AddStore("old.myshopify.com", "shpat_old_nonexpiring");
        var id = await H.Db.AddShopifyStoreAsync("old.myshopify.com", "shpat_old_nonexpiring");

        var dry = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--all", "--dry-run"], H.Settings);
        var unconfirmed = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "old.myshopify.com"], H.Settings);
        Assert.Equal("shpat_old_nonexpiring", (await H.Db.GetExpiringStoreAsync(id)).AccessToken);
        Assert.Equal(0, H.Fake.Shopify.OAuthCallsFor("old.myshopify.com"));
        var yes = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "old.myshopify.com", "--yes"], H.Settings);
        var repeat = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "old.myshopify.com", "--yes"], H.Settings);
        var unknown = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "nope.myshopify.com", "--yes"], H.Settings);
        var (cycle, _) = await H.RunCycleAsync();

        Assert.Equal(0, dry.ExitCode);
        Assert.Contains($"would migrate old.myshopify.com ({id})", dry.Stdout, StringComparison.Ordinal);
        Assert.Contains("Nothing was changed (--dry-run)", dry.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, unconfirmed.ExitCode);
        Assert.Contains("irreversible", unconfirmed.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, yes.ExitCode);
        Assert.Contains("migrated old.myshopify.com", yes.Stdout, StringComparison.Ordinal);
        var row = await H.Db.GetExpiringStoreAsync(id);
        Assert.True(H.Fake.Shopify.IsExpiring("old.myshopify.com"));
        Assert.Equal(H.Fake.Shopify.CurrentAccessToken("old.myshopify.com"), row.AccessToken);
        Assert.Equal(H.Fake.Shopify.CurrentRefreshToken("old.myshopify.com"), row.RefreshToken);
        Assert.InRange(row.ExpiresAt!.Value, DateTime.UtcNow.AddMinutes(55), DateTime.UtcNow.AddMinutes(61));
        Assert.NotNull(row.RefreshExpiresAt);
        Assert.Equal(0, repeat.ExitCode);
        Assert.Contains("already has an expiring token", repeat.Stdout, StringComparison.Ordinal);
        Assert.Equal(1, H.Fake.Shopify.OAuthCallsFor("old.myshopify.com"));
        Assert.Equal(2, unknown.ExitCode);
        // Not due for an hour: neither validated with the revoked old token nor refreshed.
        Assert.Equal("Shopify: 0/0 validated, 0 deactivated, 0 failed", cycle.Platforms[1].ToString());
        Assert.DoesNotContain("shpat_old_nonexpiring", yes.Stdout + yes.Stderr + dry.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MigrateExpiring_AnswerLost_StoreIsNotDeactivated_RepeatCompletesIt()
    {
        await H.Db.AddExpiringColumnsAsync();
        H.Fake.Shopify.AddStore("lost.myshopify.com", "shpat_lost_nonexpiring");
        var id = await H.Db.AddShopifyStoreAsync("lost.myshopify.com", "shpat_lost_nonexpiring");
        // Lost twice: the run's own second try (the documented repeat) is lost too.
        H.Fake.Shopify.SetFault("lost.myshopify.com", FakeFault.RotateThenReset, times: 2);

        var first = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--all", "--yes"], H.Settings);
        // The exchange happened at Shopify: the old token is revoked, so validating it now gets a 401.
        var (cycle, _) = await H.RunCycleAsync();
        var pending = await H.Db.GetShopifyStoreAsync(id);
        var dry = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--all", "--dry-run"], H.Settings);
        var second = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--all", "--yes"], H.Settings);

        Assert.Equal(1, first.ExitCode);
        Assert.Contains($"unanswered lost.myshopify.com ({id}): network_error: the answer was lost; run the migration again", first.Stdout, StringComparison.Ordinal);
        Assert.Contains("1 store(s) to migrate: migrated 0, already migrated 0, uninstalled 0, refused 0, unanswered 1.", first.Stdout, StringComparison.Ordinal);
        Assert.True(pending.IsActive);
        Assert.Equal("Shopify: 0/1 validated, 0 deactivated, 1 failed", cycle.Platforms[1].ToString());
        Assert.Equal(0, second.ExitCode);
        Assert.Contains("1 store(s) to migrate: migrated 1, already migrated 0, uninstalled 0, refused 0, unanswered 0.", second.Stdout, StringComparison.Ordinal);
        // Two in the first run (the second the run's own repeat), one in the second: each after a lost answer.
        Assert.Equal(3, H.Fake.Shopify.ExchangesFor("shpat_lost_nonexpiring"));
        Assert.Empty(H.Fake.Shopify.ExchangedAgainAfterAnswer);
        Assert.Contains($"would migrate lost.myshopify.com ({id}): exchange its non-expiring offline token for an expiring pair (an earlier exchange went unanswered", dry.Stdout, StringComparison.Ordinal);
        var row = await H.Db.GetExpiringStoreAsync(id);
        Assert.Equal(H.Fake.Shopify.CurrentRefreshToken("lost.myshopify.com"), row.RefreshToken);
        Assert.True(row.IsActive);
        Assert.Null(await H.Db.GetStateAsync("shopify_exchange", id));
    }
}
