using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// The main application's tables as they really are: the original schema (etsy_users keyed user_id, timestamps
/// without time zone holding UTC, a session time zone that is not UTC), their own columns, NULLs, and tables that
/// lack what the service needs.
/// </summary>
public sealed class DatabaseShapeTests : HarnessTests
{
    [Fact]
    public async Task Cycle_OriginalSchemaWithANonUtcSession_ComparesAndStoresInUtc()
    {
        Assert.Equal(TestDatabase.SessionTimeZone, await ServiceSessionTimeZoneAsync());
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

        var wallClock = await H.Db.ScalarAsync<DateTime>("SELECT token_expires_at FROM etsy_users WHERE user_id = @due", new { due });
        Assert.InRange(wallClock, before.AddSeconds(3595), DateTime.UtcNow.AddSeconds(3605));
        var updated = await H.Db.ScalarAsync<DateTime>("SELECT updated_at FROM etsy_users WHERE user_id = @due", new { due });
        Assert.InRange(updated, before.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5));
        Assert.Equal(0, H.Fake.Etsy.CallsFor(laterRefresh));
        Assert.Equal(laterRefresh, (await H.Db.GetEtsyUserAsync(later)).RefreshToken);
        var storeUpdated = await H.Db.ScalarAsync<DateTime>("SELECT updated_at FROM shopify_stores WHERE id = @store", new { store });
        Assert.InRange(storeUpdated, before.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5));
    }

    private async Task<string> ServiceSessionTimeZoneAsync()
    {
        await using var db = Npgsql.NpgsqlDataSource.Create(DatabaseUrl.Parse(H.Db.Url).ConnectionString);
        await using var connection = await db.OpenConnectionAsync();
        await using var command = new Npgsql.NpgsqlCommand("SHOW TimeZone", connection);
        return (string)(await command.ExecuteScalarAsync())!;
    }

    [Fact]
    public async Task Cycle_TheApplicationsOwnColumns_AreLeftUntouched()
    {
        var refresh = H.Fake.Etsy.AddAccount(7);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        await H.Db.ExecuteAsync(
            "UPDATE etsy_users SET etsy_user_id = 42, shop_name = 'Seller', created_at = '2025-05-05' WHERE user_id = @id", new { id });
        H.Fake.Shopify.AddStore("x.myshopify.com", "shpat_x");
        var store = await H.Db.AddShopifyStoreAsync("x.myshopify.com", "shpat_x");
        await H.Db.ExecuteAsync("UPDATE shopify_stores SET scope = 'read_orders', installed_at = '2025-06-06' WHERE id = @store", new { store });
        H.Fake.Shopify.RevokeAccessToken("x.myshopify.com");

        var (summary, _) = await H.RunCycleAsync();

        Assert.False(summary.AnyFailed);
        Assert.Equal("42|Seller|2025-05-05", await H.Db.ScalarAsync<string>(
            "SELECT etsy_user_id || '|' || shop_name || '|' || to_char(created_at, 'YYYY-MM-DD') FROM etsy_users WHERE user_id = @id", new { id }));
        Assert.Equal("read_orders|2025-06-06", await H.Db.ScalarAsync<string>(
            "SELECT scope || '|' || to_char(installed_at, 'YYYY-MM-DD') FROM shopify_stores WHERE id = @store", new { store }));
        Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        Assert.False((await H.Db.GetShopifyStoreAsync(store)).IsActive);
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
        // The bad domain is never selected: one warning a cycle names it (PlatformHostTests); the NULL token is skipped.
        Assert.Equal("Shopify: 0/1 validated, 0 deactivated, 0 failed, 1 skipped", summary.Platforms[1].ToString());
        Assert.Contains(logs, l => l.Level == LogLevel.Warning && l.Message.Contains(noExpiry.ToString(), StringComparison.Ordinal));
        Assert.Contains(logs, l => l.Level == LogLevel.Warning && l.Message.Contains(noToken.ToString(), StringComparison.Ordinal));
        Assert.Contains(logs, l => l.Level == LogLevel.Warning && l.Message.Contains(badDomain.ToString(), StringComparison.Ordinal));
        Assert.DoesNotContain(logs, l => l.Message.Contains(noRefresh.ToString(), StringComparison.Ordinal));
        Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(fine)).RefreshToken);
        Assert.Null((await H.Db.GetEtsyUserAsync(noExpiry)).ExpiresAt);
    }

    [Theory]
    [InlineData("ALTER TABLE etsy_users DROP CONSTRAINT etsy_users_pkey; ALTER TABLE etsy_users ADD PRIMARY KEY (user_id, created_at)",
        "etsy_users: its primary key has 2 columns (user_id, created_at); the service needs a single-column primary key", true)]
    [InlineData("ALTER TABLE etsy_users DROP CONSTRAINT etsy_users_pkey",
        "etsy_users: no primary key; the service needs a single-column primary key to tell its rows apart", true)]
    [InlineData("ALTER TABLE etsy_users RENAME COLUMN token_expires_at TO expires_at",
        "etsy_users: no column token_expires_at", true)]
    [InlineData("ALTER TABLE etsy_users ALTER COLUMN token_expires_at TYPE text",
        "etsy_users.token_expires_at is text; the service needs timestamptz, or timestamp holding UTC", true)]
    [InlineData("REVOKE UPDATE (access_token) ON etsy_users FROM tokenrefresh",
        "etsy_users.access_token: this role cannot update it; apply scripts/sql/service-grants.sql", false)]
    [InlineData("ALTER TABLE etsy_users ALTER COLUMN user_id DROP DEFAULT; ALTER TABLE etsy_users ALTER COLUMN user_id TYPE numeric USING 1",
        "etsy_users.user_id, its primary key, is numeric; the service needs a uuid, text, varchar, integer or bigint key", true)]
    public async Task Cycle_TableLacksWhatEtsyNeeds_StopsThatPlatformWithOneLineNamingIt_AndSendsNothing(string change, string line, bool statusNeedsIt)
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        if (!change.Contains("numeric", StringComparison.Ordinal))
        {
            await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        }

        H.Fake.Shopify.AddStore("fine.myshopify.com", "shpat_fine");
        await H.Db.AddShopifyStoreAsync("fine.myshopify.com", "shpat_fine");
        await H.Db.ExecuteAsync(change);

        using var host = H.BuildHost();
        var e = await Assert.ThrowsAsync<CycleFailedException>(() => host.Services.GetRequiredService<RefreshCycle>().RunAsync());
        var logs = host.Services.GetFakeLogCollector().GetSnapshot();
        var (status, _, statusErr) = await CliProcess.RunAsync(["status"], H.Settings);

        var error = Assert.Single(logs, l => l.Level >= LogLevel.Error && l.Message.StartsWith("Etsy:", StringComparison.Ordinal));
        Assert.Equal($"Etsy: the cycle could not run: {line}; it will be retried", error.Message);
        Assert.Null(error.Exception);
        Assert.DoesNotContain(logs, l => l.Exception is Npgsql.PostgresException);
        Assert.Equal(0, H.Fake.Etsy.TotalCalls);
        Assert.Equal("Shopify: 1/1 validated, 0 deactivated, 0 failed", e.Summary.Platforms[1].ToString());
        // `status` only reads: it stops on what it reads, and runs when only a written column is out of reach.
        Assert.Equal(statusNeedsIt ? (2, line) : (0, ""), (status, statusNeedsIt ? statusErr.Trim() : ""));
        Assert.Equal(statusNeedsIt, statusErr.Contains(line, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Cycle_MainApplicationMigratesBetweenCycles_TakesEffectWithoutARestart()
    {
        H.Fake.Shopify.AddStore("classic.myshopify.com", "shpat_classic");
        await H.Db.AddShopifyStoreAsync("classic.myshopify.com", "shpat_classic");
        var first = await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(1), DateTimeOffset.UtcNow.AddMinutes(1));
        using var host = H.BuildHost();
        var before = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();

        // The main application adopts expiring Shopify tokens and moves etsy_users to timestamptz, while the service runs.
        await H.Db.AddExpiringColumnsAsync();
        var (access, refresh) = H.Fake.Shopify.AddExpiringStore("fresh.myshopify.com");
        var store = await H.Db.AddExpiringStoreAsync("fresh.myshopify.com", access, refresh, DateTimeOffset.UtcNow.AddMinutes(2), DateTimeOffset.UtcNow.AddDays(60));
        await H.Db.ExecuteAsync("""
            ALTER TABLE etsy_users ALTER COLUMN token_expires_at TYPE timestamptz USING token_expires_at AT TIME ZONE 'UTC',
                                   ALTER COLUMN updated_at TYPE timestamptz USING updated_at AT TIME ZONE 'UTC'
            """);
        var second = await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(2), DateTimeOffset.UtcNow.AddMinutes(3));
        var after = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();

        Assert.Equal("Etsy: 1/1 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed", before.ToString());
        Assert.Equal("Etsy: 1/1 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed; Shopify expiring: 1/1 refreshed, 0 failed", after.ToString());
        Assert.NotEqual(refresh, (await H.Db.GetExpiringStoreAsync(store)).RefreshToken);
        Assert.InRange((await H.Db.GetEtsyUserAsync(second)).ExpiresAt!.Value, DateTime.UtcNow.AddSeconds(3500), DateTime.UtcNow.AddSeconds(3605));
        Assert.InRange((await H.Db.GetEtsyUserAsync(first)).ExpiresAt!.Value, DateTime.UtcNow.AddSeconds(3500), DateTime.UtcNow.AddSeconds(3605));
        var logs = host.Services.GetFakeLogCollector().GetSnapshot();
        Assert.Single(logs, l => l.Message.Contains("support is off", StringComparison.Ordinal));
        Assert.Single(logs, l => l.Message.Contains("expiring offline tokens: supported", StringComparison.Ordinal));
    }
}
