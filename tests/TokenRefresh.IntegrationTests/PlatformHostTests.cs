using System.Text.Json;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// Tokens and secrets go to the platforms and nowhere else: production URLs over verified TLS, shop domains that
/// must be {name}.myshopify.com, and no redirect followed.
/// </summary>
public sealed class PlatformHostTests : HarnessTests
{
    /// <summary>shop_domain values an attacker or a careless import could put in the main application's table.</summary>
    public static readonly string[] HostileDomains =
    [
        "evil.example.com", "127.0.0.1", "169.254.169.254", "shop.myshopify.com.evil.example.com", "shop.myshopify.com.",
        "shop.myshopify.com\n", "Shop.myshopify.com", "shop.myshopify.com:8443", "user@shop.myshopify.com", "shop.myshopify.com/admin",
        "shop..myshopify.com", "-shop.myshopify.com", "shop-.myshopify.com", "myshopify.com", ".myshopify.com", "shop.myshopify.comx",
        " shop.myshopify.com", "shöp.myshopify.com", "shop%2e.myshopify.com", "localhost", "[::1]", "",
    ];

    [Fact]
    public async Task Cycle_CallsThePlatformsAtTheirProductionUrls_OverVerifiedTls()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Shopify.AddStore("real-shop.myshopify.com", "shpat_real");
        await H.Db.AddShopifyStoreAsync("real-shop.myshopify.com", "shpat_real");

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 1/1 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed", summary.ToString());
        Assert.Equal(["api.etsy.com:443", "real-shop.myshopify.com:443"], H.Network.Connections.Distinct().Order());
        // SNI: each TLS handshake asked for the host it called.
        Assert.Equal(["api.etsy.com", "real-shop.myshopify.com"], H.Fake.ServerNames.Distinct().Order());
    }

    [Fact]
    public async Task Cycle_EveryStoreItsOwnHost_NoShopifyConnectionStaysOpenAfterItsCall_EtsysIsKeptForReuse()
    {
        // Each store is a host of its own, so a connection kept for reuse is never reused: 20,000 stores would
        // otherwise leave thousands of idle TLS connections (file descriptors, an Azure instance's outbound connections).
        await H.Db.AddExpiringColumnsAsync();
        for (var i = 0; i < 30; i++)
        {
            H.Fake.Shopify.AddStore($"store-{i}.myshopify.com", $"shpat_store_{i}");
            await H.Db.AddShopifyStoreAsync($"store-{i}.myshopify.com", $"shpat_store_{i}");
        }

        var (access, refresh) = H.Fake.Shopify.AddExpiringStore("expiring.myshopify.com");
        await H.Db.AddExpiringStoreAsync("expiring.myshopify.com", access, refresh, DateTimeOffset.UtcNow.AddMinutes(1), DateTimeOffset.UtcNow.AddDays(80));
        for (var i = 0; i < 3; i++)
        {
            await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(i), DateTimeOffset.UtcNow.AddMinutes(1));
        }

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 3/3 refreshed, 0 failed; Shopify: 30/30 validated, 0 deactivated, 0 failed; Shopify expiring: 1/1 refreshed, 0 failed", summary.ToString());
        Assert.Equal(31, H.Network.Connections.Count(c => c.EndsWith(".myshopify.com:443", StringComparison.Ordinal)));
        Assert.DoesNotContain(H.Network.OpenConnections, c => c.EndsWith(".myshopify.com:443", StringComparison.Ordinal));
        Assert.InRange(H.Network.PeakOpenToStores, 1, 16); // REFRESH_MAX_CONCURRENCY's default: no more than the calls in flight
        Assert.Contains("api.etsy.com:443", H.Network.OpenConnections);
    }

    [Fact]
    public async Task Cycle_ACertificateFromAnUntrustedAuthority_IsRefusedBeforeAnythingIsSent()
    {
        await using var h = await ServiceHarness.StartAsync(serverCertificate: TestCertificates.Impostor);
        var refresh = h.Fake.Etsy.AddAccount(1);
        var id = await h.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        h.Fake.Shopify.AddStore("real-shop.myshopify.com", "shpat_real");
        var store = await h.Db.AddShopifyStoreAsync("real-shop.myshopify.com", "shpat_real");

        var (summary, logs) = await h.RunCycleAsync();

        Assert.Equal("Etsy: 0/1 refreshed, 1 failed; Shopify: 0/1 validated, 0 deactivated, 1 failed", summary.ToString());
        Assert.Equal(0, h.Fake.Etsy.TotalCalls);
        Assert.Equal(0, h.Fake.Shopify.TotalCalls);
        Assert.Equal(2, logs.Count(l => l.Message.Contains("failed (connection_failed, transient)", StringComparison.Ordinal)));
        Assert.Equal(refresh, (await h.Db.GetEtsyUserAsync(id)).RefreshToken);
        Assert.True((await h.Db.GetShopifyStoreAsync(store)).IsActive);
    }

    [Fact]
    public async Task Cycle_HostileShopDomains_AreNeverCalledNorDeactivated_WarnedOncePerCycle_AndShownInStatus()
    {
        await H.Db.AddExpiringColumnsAsync();
        var ids = new List<Guid>();
        foreach (var domain in HostileDomains)
        {
            ids.Add(await H.Db.AddShopifyStoreAsync(domain, $"shpat_hostile_{ids.Count}"));
        }

        // An expiring store too: the app secret must not go to such a host either.
        var expiring = await H.Db.AddExpiringStoreAsync("evil.example.org", "shpat_x", "shprt_x", DateTimeOffset.UtcNow.AddMinutes(1), DateTimeOffset.UtcNow.AddDays(9));
        H.Fake.Shopify.AddStore("fine.myshopify.com", "shpat_fine");
        await H.Db.AddShopifyStoreAsync("fine.myshopify.com", "shpat_fine");

        using var host = H.BuildHost();
        var first = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        var second = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
        var logs = host.Services.GetFakeLogCollector().GetSnapshot();
        var (code, json, _) = await CliProcess.RunAsync(["status", "--json"], H.Settings);

        Assert.Equal("Shopify: 1/1 validated, 0 deactivated, 0 failed", first.Platforms[1].ToString());
        Assert.Equal("Shopify expiring: 0/0 refreshed, 0 failed", first.Platforms[2].ToString());
        Assert.Equal(["fine.myshopify.com:443"], H.Network.Connections.Distinct());
        foreach (var id in ids.Append(expiring))
        {
            Assert.True(await H.Db.ScalarAsync<bool>("SELECT is_active FROM shopify_stores WHERE id = @id", new { id }));
        }

        // One warning an hour for all of them (two cycles: one warning), naming the rule and some of the stores.
        var warnings = logs.Where(l => l.Message.Contains("active stores are not called", StringComparison.Ordinal)).ToList();
        Assert.Single(warnings);
        Assert.All(warnings, w => Assert.StartsWith(
            $"Shopify: {HostileDomains.Length + 1} active stores are not called, because their shop_domain is not {{name}}.myshopify.com", w.Message, StringComparison.Ordinal));
        Assert.DoesNotContain(logs, l => l.Message.Contains("skipped", StringComparison.Ordinal));
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        var platforms = doc.RootElement.GetProperty("platforms").EnumerateArray().ToDictionary(p => p.GetProperty("platform").GetString()!);
        Assert.Equal(HostileDomains.Length, platforms["Shopify"].GetProperty("notCalled").GetInt64());
        Assert.Equal(1, platforms["Shopify expiring"].GetProperty("notCalled").GetInt64());
        Assert.Equal(HostileDomains.Length, platforms["Shopify"].GetProperty("accounts").EnumerateArray().Count(a => a.GetProperty("group").GetString() == "not_called"));
        Assert.Equal(second.ToString(), first.ToString());
    }

    [Fact]
    public async Task ShopDomainRule_IsTheSameInPostgreSqlAsInTheService()
    {
        string[] edges = [new string('a', 63) + ".myshopify.com", new string('a', 64) + ".myshopify.com", "-a.myshopify.com", "a-.myshopify.com",
            "-.myshopify.com", ".myshopify.com", "myshopify.com", "a.b.myshopify.com", "a%b.myshopify.com", "a\n.myshopify.com", "a.myshopify.com\n", "A.myshopify.com", "a_b.myshopify.com", "a.myshopify.comx", "a.myshopifyXcom"];
        var domains = HostileDomains.Concat(edges).Concat(["shop.myshopify.com", "a.myshopify.com", "my-shop-2.myshopify.com", "xn--80ak6aa92e.myshopify.com"]).ToList();
        await using var c = await H.Db.OpenAsync();

        foreach (var domain in domains)
        {
            var sql = await c.ExecuteScalarAsync<bool>($"SELECT {ShopDomain.Sql("@domain::text")}", new { domain });
            Assert.True((ShopDomain.Problem(domain) is null) == sql, $"{JsonSerializer.Serialize(domain)}: the service says {ShopDomain.Problem(domain) is null}, PostgreSQL {sql}");
        }

        Assert.Equal(5, domains.Count(d => ShopDomain.Problem(d) is null));
    }

    [Theory]
    [InlineData("etsy")]
    [InlineData("shopify")]
    [InlineData("shopify-refresh")]
    public async Task Call_RedirectedElsewhere_FailsNamingTheStatus_AndSendsNothingFurther(string kind)
    {
        string secret;
        if (kind == "etsy")
        {
            secret = H.Fake.Etsy.AddAccount(1);
            await H.Db.AddEtsyUserAsync(secret, DateTimeOffset.UtcNow.AddMinutes(1));
            H.Fake.Etsy.SetFault(secret, FakeFault.Redirect);
        }
        else if (kind == "shopify")
        {
            secret = "shpat_redirected";
            H.Fake.Shopify.AddStore("moved.myshopify.com", secret);
            await H.Db.AddShopifyStoreAsync("moved.myshopify.com", secret);
            H.Fake.Shopify.SetFault("moved.myshopify.com", FakeFault.Redirect);
        }
        else
        {
            await H.Db.AddExpiringColumnsAsync();
            var (access, refresh) = H.Fake.Shopify.AddExpiringStore("moved.myshopify.com");
            await H.Db.AddExpiringStoreAsync("moved.myshopify.com", access, refresh, DateTimeOffset.UtcNow.AddMinutes(1), DateTimeOffset.UtcNow.AddDays(9));
            H.Fake.Shopify.SetFault("moved.myshopify.com", FakeFault.Redirect);
            secret = refresh;
        }

        var (summary, logs) = await H.RunCycleAsync();

        Assert.True(summary.AnyFailed);
        Assert.Contains(logs, l => l.Message.Contains("failed (redirect_307, transient)", StringComparison.Ordinal));
        Assert.DoesNotContain(H.Network.Connections, c => c.StartsWith("attacker.example.com", StringComparison.Ordinal));
        Assert.DoesNotContain(logs, l => l.Level == LogLevel.Information && l.Message.Contains("deactivated", StringComparison.Ordinal));
    }
}
