using System.Text.Json;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// The core scenarios on each shape of the main application's tables that teams have: etsy_users keyed user_id (the
/// original's schema) or id, and every timestamp column, the Shopify expiring ones included, as timestamptz or as
/// timestamp without time zone holding UTC, under a session time zone that is not UTC.
/// </summary>
public sealed class SchemaVariantTests
{
    public static TheoryData<string, string> Variants => new()
    {
        { "user_id", "timestamp" },
        { "user_id", "timestamptz" },
        { "id", "timestamp" },
        { "id", "timestamptz" },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public async Task CoreScenarios_RefreshValidateDeactivateBackoffStatusAndForce_OnThisSchema(string etsyKey, string timestamp)
    {
        await using var h = await ServiceHarness.StartAsync(await TestDatabase.CreateAsync(variant: new SchemaVariant(etsyKey, timestamp)));
        await h.Db.AddExpiringColumnsAsync();
        var now = DateTimeOffset.UtcNow;
        var dueRefresh = h.Fake.Etsy.AddAccount(1);
        var due = await h.Db.AddEtsyUserAsync(dueRefresh, now.AddMinutes(2));
        var laterRefresh = h.Fake.Etsy.AddAccount(2);
        var later = await h.Db.AddEtsyUserAsync(laterRefresh, now.AddMinutes(50));
        var revokedRefresh = h.Fake.Etsy.AddAccount(3);
        var revoked = await h.Db.AddEtsyUserAsync(revokedRefresh, now.AddMinutes(1));
        h.Fake.Etsy.Revoke(revokedRefresh);
        var flakyRefresh = h.Fake.Etsy.AddAccount(4);
        var flaky = await h.Db.AddEtsyUserAsync(flakyRefresh, now.AddMinutes(1));
        h.Fake.Etsy.SetFault(flakyRefresh, FakeFault.ServerError);
        h.Fake.Shopify.AddStore("valid.myshopify.com", "shpat_valid");
        var valid = await h.Db.AddShopifyStoreAsync("valid.myshopify.com", "shpat_valid");
        h.Fake.Shopify.AddStore("gone.myshopify.com", "shpat_gone");
        var gone = await h.Db.AddShopifyStoreAsync("gone.myshopify.com", "shpat_gone");
        h.Fake.Shopify.RevokeAccessToken("gone.myshopify.com");
        var (access, refresh) = h.Fake.Shopify.AddExpiringStore("expiring.myshopify.com");
        var expiring = await h.Db.AddExpiringStoreAsync("expiring.myshopify.com", access, refresh, now.AddMinutes(3), now.AddDays(40));
        var before = DateTime.UtcNow;

        var (first, _) = await h.RunCycleAsync();

        Assert.Equal(
            "Etsy: 1/3 refreshed, 2 failed; Shopify: 1/2 validated, 1 deactivated, 0 failed; Shopify expiring: 1/1 refreshed, 0 failed", first.ToString());
        var dueRow = await h.Db.GetEtsyUserAsync(due);
        Assert.Equal(h.Fake.Etsy.IssuedFor(dueRefresh)!.Value.RefreshToken, dueRow.RefreshToken);
        Assert.InRange(dueRow.ExpiresAt!.Value, before.AddSeconds(3595), DateTime.UtcNow.AddSeconds(3605));
        Assert.InRange(dueRow.UpdatedAt, before.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5));
        Assert.Equal(laterRefresh, (await h.Db.GetEtsyUserAsync(later)).RefreshToken);
        Assert.True((await h.Db.GetShopifyStoreAsync(valid)).IsActive);
        Assert.False((await h.Db.GetShopifyStoreAsync(gone)).IsActive);
        var expiringRow = await h.Db.GetExpiringStoreAsync(expiring);
        Assert.Equal(h.Fake.Shopify.CurrentRefreshToken("expiring.myshopify.com"), expiringRow.RefreshToken);
        Assert.InRange(expiringRow.ExpiresAt!.Value, before.AddSeconds(3595), DateTime.UtcNow.AddSeconds(3605));
        Assert.InRange(expiringRow.RefreshExpiresAt!.Value, before.AddDays(90).AddSeconds(-5), DateTime.UtcNow.AddDays(90).AddSeconds(5));

        // Backoff and re-authorisation: the next cycle calls neither the revoked nor the failing user.
        var calls = h.Fake.Etsy.TotalCalls;
        var (second, _) = await h.RunCycleAsync();
        Assert.Equal(calls, h.Fake.Etsy.TotalCalls);
        Assert.Equal("Etsy: 0/0 refreshed, 0 failed", second.Platforms[0].ToString());
        Assert.True((await h.Db.GetStateAsync("etsy", revoked))!.NeedsReauth);
        Assert.True((await h.Db.GetStateAsync("etsy", flaky))!.NextAttemptAt > DateTime.UtcNow);

        var (statusCode, json, _) = await CliProcess.RunAsync(["status", "--json"], h.Settings);
        Assert.Equal(0, statusCode);
        using var doc = JsonDocument.Parse(json);
        var etsy = doc.RootElement.GetProperty("platforms")[0];
        Assert.Equal(1, etsy.GetProperty("needsReauth").GetInt64());
        Assert.Equal(1, etsy.GetProperty("backingOff").GetInt64());
        var groups = etsy.GetProperty("accounts").EnumerateArray().ToDictionary(a => a.GetProperty("id").GetString()!, a => a.GetProperty("group").GetString());
        Assert.Equal("needs_reauth", groups[revoked.ToString()]);
        Assert.Equal("backing_off", groups[flaky.ToString()]);

        // An operator refreshes a user who is not due, by its key, in upper case as people paste it.
        var (forceCode, forceOut, _) = await CliProcess.RunAsync(["refresh", "--etsy-user", later.ToString().ToUpperInvariant()], h.Settings);
        Assert.Equal((0, $"Etsy account {later}: refreshed"), (forceCode, forceOut.Trim()));
        Assert.Equal(h.Fake.Etsy.IssuedFor(laterRefresh)!.Value.RefreshToken, (await h.Db.GetEtsyUserAsync(later)).RefreshToken);
    }
}
