using Microsoft.Extensions.DependencyInjection;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>Refresh chains: due Etsy users, and the check that no rotated token was lost.</summary>
internal static class Chains
{
    /// <summary>Two active stores: fine.myshopify.com, whose token Shopify accepts, and gone.myshopify.com, whose token it revoked (returned).</summary>
    public static async Task<Guid> FineAndRevokedStoresAsync(ServiceHarness h)
    {
        h.Fake.Shopify.AddStore("fine.myshopify.com", "shpat_fine");
        await h.Db.AddShopifyStoreAsync("fine.myshopify.com", "shpat_fine");
        h.Fake.Shopify.AddStore("gone.myshopify.com", "shpat_gone");
        var gone = await h.Db.AddShopifyStoreAsync("gone.myshopify.com", "shpat_gone");
        h.Fake.Shopify.RevokeAccessToken("gone.myshopify.com");
        return gone;
    }

    /// <summary>
    /// Two Etsy users due within the margin: one whose refresh token the fake issued (user <paramref name="fineUserId"/>),
    /// and one whose refresh token it never issued, as when a user revoked the grant (invalid_grant).
    /// </summary>
    public static async Task<(string FineRefresh, Guid Revoked, string RevokedRefresh)> FineAndRevokedUsersAsync(ServiceHarness h, long fineUserId)
    {
        var fine = h.Fake.Etsy.AddAccount(fineUserId);
        await h.Db.AddEtsyUserAsync(fine, DateTimeOffset.UtcNow.AddMinutes(2));
        var unknown = $"revoked-refresh-{Guid.NewGuid():N}";
        var revoked = await h.Db.AddEtsyUserAsync(unknown, DateTimeOffset.UtcNow.AddMinutes(2));
        return (fine, revoked, unknown);
    }

    /// <summary>Runs <paramref name="count"/> cycles at once, each in a host of its own, as replicas do.</summary>
    public static async Task<CycleSummary[]> ConcurrentCyclesAsync(ServiceHarness h, int count)
    {
        var hosts = Enumerable.Range(0, count).Select(_ => h.BuildHost()).ToList();
        try
        {
            return await Task.WhenAll(hosts.Select(host => Task.Run(() => host.Services.GetRequiredService<RefreshCycle>().RunAsync())));
        }
        finally
        {
            hosts.ForEach(host => host.Dispose());
        }
    }

    /// <summary>Etsy users due now, each with a refresh token the fake accepts.</summary>
    public static async Task<List<(Guid Id, string Refresh)>> DueUsersAsync(ServiceHarness h, int count)
    {
        var users = new List<(Guid, string)>();
        for (var i = 0; i < count; i++)
        {
            var refresh = h.Fake.Etsy.AddAccount(1000 + i);
            users.Add((await h.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(-1).AddSeconds(i)), refresh));
        }

        return users;
    }

    /// <summary>Nothing lost: each row holds a refresh token the platform still accepts, and a rotated account holds the issued pair.</summary>
    public static async Task AssertNoTokenLostAsync(ServiceHarness h, IEnumerable<(Guid Id, string Refresh)> users)
    {
        foreach (var (id, original) in users)
        {
            var row = await h.Db.GetEtsyUserAsync(id);
            Assert.True(h.Fake.Etsy.IsValid(row.RefreshToken!), $"account {id} holds a refresh token Etsy no longer accepts");
            if (h.Fake.Etsy.IssuedFor(original) is { } issued)
            {
                Assert.Equal(issued.RefreshToken, row.RefreshToken);
                Assert.Equal(issued.AccessToken, row.AccessToken);
                Assert.True(row.ExpiresAt > DateTime.UtcNow.AddMinutes(50), $"account {id} has the new pair but not its expiry");
            }
            else
            {
                Assert.Equal(original, row.RefreshToken);
                Assert.Equal("old-access-token", row.AccessToken);
            }
        }
    }
}
