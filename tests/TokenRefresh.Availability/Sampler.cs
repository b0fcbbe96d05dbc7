using Dapper;
using Npgsql;
using TokenRefresh.FakePlatforms;

namespace TokenRefresh.Availability;

/// <summary>
/// One look at the stored tokens, as the main application reads them (keys "etsy:&lt;user_id&gt;" and
/// "shop:&lt;domain&gt;"): every account (<see cref="Total"/>), those whose access token the platform would refuse at that
/// moment (<see cref="Invalid"/>, whatever the cause), and what may explain some of them: revoked by their users,
/// flagged by the service, or caught between a Shopify refresh's answer and its write (<see cref="Rotating"/>, also in
/// <see cref="Invalid"/>). <see cref="EtsyDue"/>: Etsy users, not revoked, whose token has expired or is within the
/// refresh margin (the work a recovery owes). A sample that could not read the database is <see cref="Failed"/>: a gap,
/// never a success.
/// </summary>
internal sealed record Sample(
    DateTimeOffset At, bool Failed, int Total, IReadOnlyList<string> Invalid, IReadOnlySet<string> Revoked, IReadOnlySet<string> Flagged,
    IReadOnlySet<string> Rotating, double IdleInTransactionSeconds, long EtsyCalls, long ShopifyCalls, double CpuSeconds, int EtsyDue)
{
    public static Sample Gap(DateTimeOffset at) => new(at, true, 0, [], new HashSet<string>(), new HashSet<string>(), new HashSet<string>(), 0, 0, 0, 0, 0);
}

internal sealed class Sampler(
    string adminDb, FakePlatformServer fake, Dictionary<string, DateTimeOffset> revoked, Lock revokedLock, SemaphoreSlim reading, TimeSpan margin)
{
    /// <summary>How long after a Shopify refresh its replaced access token still counts: the time for its answer to be stored.</summary>
    public static readonly TimeSpan RotationGrace = TimeSpan.FromSeconds(2);

    /// <summary>A sample; a failed one (a gap) while the database cannot be read.</summary>
    public async Task<Sample> TakeAsync()
    {
        await reading.WaitAsync();
        try
        {
            await using var c = new NpgsqlConnection(adminDb);
            await c.OpenAsync();
            var etsy = await c.QueryAsync<(string Id, string? Access)>("SELECT user_id::text, access_token FROM etsy_users");
            var shops = (await c.QueryAsync<(string Id, string Shop, string? Access, bool Active)>("SELECT id::text, shop_domain, access_token, is_active FROM shopify_stores")).ToList();
            var reauth = await c.QueryAsync<(string Platform, string Id)>("SELECT platform, account_id FROM token_refresh_state WHERE needs_reauth AND platform IN ('etsy', 'shopify_refresh')");
            var idle = await c.ExecuteScalarAsync<double?>("""
                SELECT max(extract(epoch FROM clock_timestamp() - state_change))::float8 FROM pg_stat_activity
                WHERE usename = 'tokenrefresh' AND state LIKE 'idle in transaction%'
                """) ?? 0;
            var at = DateTimeOffset.UtcNow;
            HashSet<string> gone;
            lock (revokedLock)
            {
                gone = [.. revoked.Keys];
            }

            var domains = shops.ToDictionary(s => s.Id, s => s.Shop);
            var flagged = reauth.Select(r => r.Platform == "etsy" ? "etsy:" + r.Id : domains.TryGetValue(r.Id, out var shop) ? "shop:" + shop : null)
                .OfType<string>().ToHashSet();
            var invalid = new List<string>();
            var rotating = new HashSet<string>();
            var due = 0;
            foreach (var (id, access) in etsy)
            {
                var key = "etsy:" + id;
                if (!fake.Etsy.IsAccessTokenValid(access, at))
                {
                    invalid.Add(key);
                }

                if (!fake.Etsy.IsAccessTokenValid(access, at + margin) && !gone.Contains(key))
                {
                    due++;
                }
            }

            foreach (var (_, shop, access, active) in shops)
            {
                var key = "shop:" + shop;
                // An inactive store is one the main application no longer calls: unavailable (and flagged: it was switched off).
                if (!active)
                {
                    flagged.Add(key);
                }

                if (!active || !fake.Shopify.IsAccessTokenValid(shop, access, at))
                {
                    invalid.Add(key);
                    // A refresh invalidates Shopify's old access token at once, and the new one is stored a moment later: the main
                    // application that reads the row again after a 401 (as docs/expiring-tokens.md asks) gets the new one.
                    if (active && fake.Shopify.WasReplacedWithin(shop, access, at, RotationGrace))
                    {
                        rotating.Add(key);
                    }
                }
            }

            return new Sample(at, false, etsy.Count() + shops.Count, invalid, gone, flagged, rotating, idle,
                fake.Etsy.TotalCalls, fake.Shopify.TotalCalls, Replica.TotalCpuSeconds(), due);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            return Sample.Gap(DateTimeOffset.UtcNow);
        }
        finally
        {
            reading.Release();
        }
    }
}
