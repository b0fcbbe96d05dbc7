using Microsoft.Extensions.Logging;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>The main application's tables as they may really be: other column types, more columns, NULLs.</summary>
public sealed class DatabaseShapeTests : HarnessTests
{


    [Fact]
    public async Task Cycle_TimestampWithoutTimeZoneHoldingUtc_ComparesAndStoresInUtc()
    {
        await H.Db.ExecuteAsync("""
            ALTER TABLE etsy_users ALTER COLUMN token_expires_at TYPE timestamp USING token_expires_at AT TIME ZONE 'UTC';
            ALTER TABLE etsy_users ALTER COLUMN updated_at TYPE timestamp USING updated_at AT TIME ZONE 'UTC';
            ALTER TABLE shopify_stores ALTER COLUMN updated_at TYPE timestamp USING updated_at AT TIME ZONE 'UTC';
            """);
        await H.Db.ExecuteAsync($"ALTER DATABASE {H.Db.Name} SET timezone TO 'America/Los_Angeles'");
        var dueRefresh = H.Fake.Etsy.AddAccount(1);
        var laterRefresh = H.Fake.Etsy.AddAccount(2);
        // Written as UTC wall-clock values, as the main application does for this column type.
        var due = await H.Db.AddEtsyUserAsync(dueRefresh, DateTimeOffset.UtcNow.AddMinutes(5));
        var later = await H.Db.AddEtsyUserAsync(laterRefresh, DateTimeOffset.UtcNow.AddMinutes(30));
        H.Fake.Shopify.AddStore("shop.myshopify.com", "shpat_1");
        var store = await H.Db.AddShopifyStoreAsync("shop.myshopify.com", "shpat_1");
        H.Fake.Shopify.RevokeAccessToken("shop.myshopify.com");
        var before = DateTime.UtcNow;

        await H.RunCycleAsync();

        var wallClock = await H.Db.ScalarAsync<DateTime>("SELECT token_expires_at FROM etsy_users WHERE id = @due", new { due });
        Assert.InRange(wallClock, before.AddSeconds(3595), DateTime.UtcNow.AddSeconds(3605));
        var updated = await H.Db.ScalarAsync<DateTime>("SELECT updated_at FROM etsy_users WHERE id = @due", new { due });
        Assert.InRange(updated, before.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5));
        Assert.Equal(0, H.Fake.Etsy.CallsFor(laterRefresh));
        Assert.Equal(laterRefresh, (await H.Db.GetEtsyUserAsync(later)).RefreshToken);
        var storeUpdated = await H.Db.ScalarAsync<DateTime>("SELECT updated_at FROM shopify_stores WHERE id = @store", new { store });
        Assert.InRange(storeUpdated, before.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5));
    }

    [Fact]
    public async Task Cycle_TablesWithTheApplicationsOwnColumns_LeavesThemUntouched()
    {
        await H.Db.ExecuteAsync("""
            ALTER TABLE etsy_users ADD COLUMN email text NOT NULL DEFAULT 'a@example.com',
                                   ADD COLUMN shop_id bigint, ADD COLUMN created_at timestamptz DEFAULT '2025-05-05';
            ALTER TABLE shopify_stores ADD COLUMN plan text DEFAULT 'basic', ADD COLUMN user_id uuid;
            """);
        var refresh = H.Fake.Etsy.AddAccount(7);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        await H.Db.ExecuteAsync("UPDATE etsy_users SET email = 'seller@example.com', shop_id = 42 WHERE id = @id", new { id });
        H.Fake.Shopify.AddStore("x.myshopify.com", "shpat_x");
        var store = await H.Db.AddShopifyStoreAsync("x.myshopify.com", "shpat_x");
        H.Fake.Shopify.RevokeAccessToken("x.myshopify.com");

        var (summary, _) = await H.RunCycleAsync();

        Assert.False(summary.AnyFailed);
        Assert.Equal("seller@example.com|42|2025-05-05", await H.Db.ScalarAsync<string>(
            "SELECT email || '|' || shop_id || '|' || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM etsy_users WHERE id = @id", new { id }));
        Assert.Equal("basic", await H.Db.ScalarAsync<string>("SELECT plan FROM shopify_stores WHERE id = @store", new { store }));
        Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Fact]
    public async Task Cycle_NullTokensAndExpiries_AreSkippedWithAWarningAndTheCycleGoesOn()
    {
        var noExpiry = await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(1), expiresAt: null);
        var noRefresh = await H.Db.AddEtsyUserAsync(refreshToken: null, DateTimeOffset.UtcNow.AddMinutes(-5), accessToken: null);
        var refresh = H.Fake.Etsy.AddAccount(2);
        var fine = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        var noToken = await H.Db.AddShopifyStoreAsync("notoken.myshopify.com", accessToken: null);
        var badDomain = await H.Db.AddShopifyStoreAsync("evil.com/../../x", "shpat_y");

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 1/2 refreshed, 0 failed, 1 skipped", summary.Platforms[0].ToString());
        Assert.Equal("Shopify: 0/2 validated, 0 deactivated, 0 failed, 2 skipped", summary.Platforms[1].ToString());
        Assert.Contains(logs, l => l.Level == LogLevel.Warning && l.Message.Contains(noExpiry.ToString(), StringComparison.Ordinal));
        Assert.Contains(logs, l => l.Level == LogLevel.Warning && l.Message.Contains(noToken.ToString(), StringComparison.Ordinal));
        Assert.Contains(logs, l => l.Level == LogLevel.Warning && l.Message.Contains(badDomain.ToString(), StringComparison.Ordinal));
        Assert.DoesNotContain(logs, l => l.Message.Contains(noRefresh.ToString(), StringComparison.Ordinal));
        Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(fine)).RefreshToken);
        Assert.Null((await H.Db.GetEtsyUserAsync(noExpiry)).ExpiresAt);
    }
}
