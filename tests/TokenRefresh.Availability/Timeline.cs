using Dapper;
using Npgsql;
using TokenRefresh.FakePlatforms;

namespace TokenRefresh.Availability;

/// <summary>What the day's faults and the main application's reconnects act on.</summary>
internal sealed record DayWorld(
    DayOptions Options, string Root, string Cli, string Work, string AdminDb, FakePlatformServer Fake, IReadOnlyDictionary<string, string?> Settings,
    Dictionary<string, long> EtsyIds, IReadOnlyList<string> NonExpiringShops, TimeSpan TokenLife);

/// <summary>
/// A replica killed while it held leases: each Etsy account it held, when its lease ends and when its access token
/// expires; and each Shopify store with an expiring token it held, when its lease ends.
/// </summary>
internal sealed record KilledLeases(
    DateTimeOffset At, IReadOnlyList<(string Key, DateTimeOffset LeaseUntil, DateTimeOffset ExpiresAt)> Held,
    IReadOnlyList<(string Key, DateTimeOffset LeaseUntil)> ShopifyHeld);

/// <summary>
/// The day: a warm-up, then a segment per fault, each starting with its fault; meanwhile users reconnect. Every change
/// it makes to the world is recorded: the faults with their times, the revocations, the reconnects.
/// </summary>
internal sealed class Timeline(DayWorld world, DateTimeOffset measureFrom, Random random)
{
    private readonly List<Fault> _faults = [];
    private readonly Lock _revokedLock = new();
    private int _reconnects;

    public IReadOnlyList<Fault> Faults => _faults;

    public Dictionary<string, DateTimeOffset> Revoked { get; } = []; // "etsy:<user_id>" or "shop:<domain>" -> when

    public Lock RevokedLock => _revokedLock;

    public int Reconnects => _reconnects;

    /// <summary>Held while a sample reads: a sample never sees a reconnect half done (the row written, the ledger not yet).</summary>
    public SemaphoreSlim Reading { get; } = new(1);

    public List<Replica> Replicas { get; } = [];

    /// <summary>What the killed replica left behind it; null until the kill.</summary>
    public KilledLeases? Killed { get; private set; }

    private DayOptions O => world.Options;

    public async Task RunAsync(CancellationTokenSource stop)
    {
        var segment = TimeSpan.FromSeconds(O.SegmentSeconds);
        var cycle = TimeSpan.FromSeconds(O.CycleSeconds);
        var at = measureFrom;
        await Until(at);

        async Task Window(string name, double seconds, bool outage, Action begin, Action end, bool backlog = false)
        {
            await Until(at);
            var f = new Fault(name, DateTimeOffset.UtcNow, outage, backlog);
            _faults.Add(f);
            begin();
            await Task.Delay(TimeSpan.FromSeconds(seconds));
            end();
            f.End = DateTimeOffset.UtcNow;
            // A fault that outlasts its segment gets a whole segment after it, to show its end.
            at += segment + (backlog ? TimeSpan.FromSeconds(seconds) : TimeSpan.Zero);
        }

        async Task Moment(string name, Func<Task> act)
        {
            await Until(at);
            var f = new Fault(name, DateTimeOffset.UtcNow, Outage: false);
            _faults.Add(f);
            await act();
            f.End = DateTimeOffset.UtcNow;
            at += segment;
        }

        await Moment("steady state (no fault)", () => Task.CompletedTask);
        await Moment("1% of users revoke access (Etsy users, and stores uninstalling)", () => Revoke());
        await Window($"Etsy outage: every call 500 for {O.OutageSeconds} s, longer than the margin", O.OutageSeconds, true,
            () => world.Fake.Etsy.PlatformFault = FakeFault.ServerError, () => world.Fake.Etsy.PlatformFault = FakeFault.None, backlog: true);
        await Moment("one replica killed (SIGKILL) mid-cycle, holding leases; started again a cycle later", async () =>
        {
            Killed = await KillHoldingLeasesAsync(Replicas[0], 3 * cycle);
            await Task.Delay(cycle);
            Replicas[0] = Replica.Start("A2", world.Cli, world.Settings, world.Work);
        });
        world.Fake.Etsy.RetryAfterSeconds = 2;
        await Window($"Etsy 429 storm (Retry-After: 2) for {O.StormSeconds} s", O.StormSeconds, true,
            () => world.Fake.Etsy.PlatformFault = FakeFault.RateLimited, () => world.Fake.Etsy.PlatformFault = FakeFault.None);
        await Window($"Etsy and Shopify hang (no answer) for {O.StormSeconds} s", O.StormSeconds, true,
            () => world.Fake.Etsy.PlatformFault = world.Fake.Shopify.PlatformFault = FakeFault.Hang,
            () => world.Fake.Etsy.PlatformFault = world.Fake.Shopify.PlatformFault = FakeFault.None);
        await Window($"Shopify 401 wave: every validation rejected for {O.StormSeconds} s", O.StormSeconds, true,
            () => world.Fake.Shopify.PlatformFault = FakeFault.Unauthorized, () => world.Fake.Shopify.PlatformFault = FakeFault.None);
        await Moment("PostgreSQL restarted", () => Shell.RunAsync(Path.Combine(world.Root, "scripts", "pg.sh"), "restart", O.PgDir));
        await Moment("PgBouncer restarted", () => Shell.RunAsync(Path.Combine(world.Root, "scripts", "pgbouncer.sh"), "restart", O.BouncerDir));
        // One more segment, for the last fault to show its end, and for every lost answer to be flagged: it is retried once
        // its lease has run out and, not believed the first time, once more after the first backoff.
        await Until(at);
        await stop.CancelAsync();
    }

    // SIGKILL at a moment the replica holds Etsy leases (polled, for at most `within`), as a crash in the middle of a cycle
    // leaves them. The replica is frozen while its leases are read, so a lease seen is a lease it still holds when killed.
    private async Task<KilledLeases> KillHoldingLeasesAsync(Replica replica, TimeSpan within)
    {
        const string Held = """
            SELECT 'etsy:' || s.account_id, s.lease_until, u.token_expires_at
            FROM token_refresh_state s JOIN etsy_users u ON u.user_id::text = s.account_id
            WHERE s.platform = 'etsy' AND s.lease_until > now() AND s.lease_holder LIKE @Holder
            """;
        const string ShopifyHeld = """
            SELECT 'shop:' || st.shop_domain, s.lease_until
            FROM token_refresh_state s JOIN shopify_stores st ON st.id::text = s.account_id
            WHERE s.platform = 'shopify_refresh' AND s.lease_until > now() AND s.lease_holder LIKE @Holder
            """;
        var holder = new { Holder = $"%/{replica.ProcessId}/%" };
        await using var c = new NpgsqlConnection(world.AdminDb);
        await c.OpenAsync();
        var until = DateTimeOffset.UtcNow + within;
        List<(string Key, DateTime LeaseUntil, DateTime ExpiresAt)> held = [];
        List<(string Key, DateTime LeaseUntil)> shops = [];
        while (held.Count == 0 && DateTimeOffset.UtcNow < until)
        {
            if (await c.ExecuteScalarAsync<int>($"SELECT count(*)::int FROM ({Held}) held", holder) == 0)
            {
                await Task.Delay(5);
                continue;
            }

            replica.Freeze(true);
            held = [.. await c.QueryAsync<(string, DateTime, DateTime)>(Held, holder)];
            shops = [.. await c.QueryAsync<(string, DateTime)>(ShopifyHeld, holder)];
            if (held.Count == 0)
            {
                replica.Freeze(false); // its call ended between the two reads: try again
            }
        }

        replica.Kill();
        var at = DateTimeOffset.UtcNow;
        return new KilledLeases(at, [.. held.Select(h => (h.Key, Utc(h.LeaseUntil), Utc(h.ExpiresAt)))], [.. shops.Select(h => (h.Key, Utc(h.LeaseUntil)))]);

        static DateTimeOffset Utc(DateTime t) => new(DateTime.SpecifyKind(t, DateTimeKind.Utc));
    }

    private Task Revoke()
    {
        var when = DateTimeOffset.UtcNow;
        lock (_revokedLock)
        {
            foreach (var (id, userId) in world.EtsyIds.Where((_, i) => i % 100 == 7))
            {
                world.Fake.Etsy.RevokeUser(userId);
                Revoked["etsy:" + id] = when;
            }

            foreach (var shop in world.NonExpiringShops.Where((_, i) => i % 100 == 7))
            {
                world.Fake.Shopify.Uninstall(shop);
                Revoked["shop:" + shop] = when;
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>The main application, meanwhile: users reconnect (a new grant; the old tokens stop working) while refreshes run.</summary>
    public async Task ReconnectsAsync(CancellationToken stop)
    {
        await Until(measureFrom);
        var ids = world.EtsyIds.Keys.ToArray();
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(O.ReconnectEverySeconds), stop).ContinueWith(_ => { }, CancellationToken.None);
            var id = ids[random.Next(ids.Length)];
            lock (_revokedLock)
            {
                if (stop.IsCancellationRequested || Revoked.ContainsKey("etsy:" + id))
                {
                    continue;
                }
            }

            await Reading.WaitAsync(CancellationToken.None);
            try
            {
                await ReconnectAsync(id);
            }
            catch (NpgsqlException)
            {
                // The database restarting: this user reconnects later.
            }
            finally
            {
                Reading.Release();
            }
        }
    }

    private async Task ReconnectAsync(string id)
    {
        await using var c = new NpgsqlConnection(world.AdminDb);
        // A user whose rotated pair was lost is left to the end of the day, where it is counted as lost and must be flagged.
        var stored = await c.ExecuteScalarAsync<string?>("SELECT refresh_token FROM etsy_users WHERE user_id = @Id::uuid", new { Id = id });
        if (stored is not null && !world.Fake.Etsy.IsValid(stored))
        {
            return;
        }

        var pair = world.Fake.Etsy.Issue(world.EtsyIds[id], DateTimeOffset.UtcNow);
        // As docs/database.md says the main application writes a reconnected user's tokens: the row, nothing else.
        await c.ExecuteAsync("""
            UPDATE etsy_users SET access_token = @Access, refresh_token = @Refresh, token_expires_at = @ExpiresAt::timestamp,
                   updated_at = now() AT TIME ZONE 'UTC'
            WHERE user_id = @Id::uuid
            """, new { Id = id, Access = pair.AccessToken, Refresh = pair.RefreshToken, ExpiresAt = Db.Utc(DateTimeOffset.UtcNow + world.TokenLife) });
        world.Fake.Etsy.RevokeUser(world.EtsyIds[id], pair);
        Interlocked.Increment(ref _reconnects);
    }

    private static async Task Until(DateTimeOffset at)
    {
        if (at - DateTimeOffset.UtcNow is { Ticks: > 0 } wait)
        {
            await Task.Delay(wait);
        }
    }
}
