// Token availability through a compressed day of faults. Driven by ./scripts/availability.sh, which starts a throwaway
// PostgreSQL and PgBouncer and passes them here:
//   dotnet TokenRefresh.Availability.dll ADMIN_URL PG_DIR BOUNCER_DIR [--etsy N] [--stores N] [--expiring N]
//     [--token-seconds S] [--cycle-seconds C] [--segment-seconds L] [--outage-seconds O] [--latency-ms M] [--report FILE] [--assert]
// The real service runs unchanged as two CLI replicas (`tokenrefresh run`) through PgBouncer, configured only by its
// settings; the fakes (in this process) issue short-lived tokens and keep a ledger of which access token of each
// account is valid at each moment. Every sample reads the stored tokens as the main application would and asks the
// ledger. With --assert the exit code says whether the targets held (0) or not (1).
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Dapper;
using Npgsql;
using TokenRefresh.Availability;
using TokenRefresh.FakePlatforms;

var o = DayOptions.Parse(args);
var root = DayOptions.FindRoot();
var cli = Path.Combine(root, "src", "TokenRefresh.Cli", "bin", "Release", "net10.0", "TokenRefresh.Cli.dll");
var work = Directory.CreateTempSubdirectory("tokenrefresh-availability-").FullName;
var random = new Random(20261129);

// The database: the original's tables, the service's own (`tokenrefresh migrate`), and a least-privilege role.
var admin = Db.Builder(o.AdminUrl);
var database = $"day_{Guid.NewGuid():N}";
await using (var c = new NpgsqlConnection(admin.ConnectionString))
{
    await c.ExecuteAsync($"CREATE DATABASE {database}");
}

admin.Database = database;
var adminDb = admin.ConnectionString;
await using (var c = new NpgsqlConnection(adminDb))
{
    await c.ExecuteAsync(await File.ReadAllTextAsync(Path.Combine(root, "scripts", "sql", "app-tables.sql")));
    await c.ExecuteAsync(await File.ReadAllTextAsync(Path.Combine(root, "scripts", "sql", "shopify-expiring-tokens.sql")));
}

var ownerUrl = Db.Url(admin, admin.Port, admin.Username!, admin.Password!);
var migrate = await Replica.RunToEndAsync(cli, ["migrate"], new()
{
    ["DATABASE_URL"] = ownerUrl, ["ETSY_CLIENT_ID"] = "unused", ["ETSY_CLIENT_SECRET"] = "unused", ["SHOPIFY_API_KEY"] = "unused", ["SHOPIFY_API_SECRET"] = "unused",
}, work);
if (migrate != 0)
{
    throw new InvalidOperationException($"tokenrefresh migrate exited with {migrate}");
}

var servicePassword = Convert.ToHexString(Guid.NewGuid().ToByteArray());
await using (var c = new NpgsqlConnection(adminDb))
{
    await c.ExecuteAsync($"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tokenrefresh') THEN CREATE ROLE tokenrefresh LOGIN; END IF; END $$; ALTER ROLE tokenrefresh PASSWORD '{servicePassword}'");
    await c.ExecuteAsync(await File.ReadAllTextAsync(Path.Combine(root, "scripts", "sql", "service-grants.sql")));
}

// The fakes, with tokens as short-lived as the day is compressed.
await using var fake = await FakePlatformServer.StartAsync();
var tokenLife = TimeSpan.FromSeconds(o.TokenSeconds);
fake.Etsy.AccessTokenLifetime = tokenLife;
fake.Shopify.AccessTokenLifetime = tokenLife;
fake.Latency = TimeSpan.FromMilliseconds(o.LatencyMs);
var scale = 3600.0 / o.TokenSeconds; // an hour of the day passes in TokenSeconds

// The accounts, their tokens issued at moments spread over one lifetime, as in a deployment that has run for a while.
var now = DateTimeOffset.UtcNow;
var etsyIds = new Dictionary<string, long>(); // user_id -> Etsy user id
var rows = new List<(Guid Id, string Access, string Refresh, string ExpiresAt, long EtsyUserId)>();
for (var i = 0; i < o.EtsyUsers; i++)
{
    var issuedAt = now - tokenLife * random.NextDouble() * 0.95;
    var userId = 70_000_000L + i;
    var (access, refresh) = fake.Etsy.Issue(userId, issuedAt);
    var id = Guid.NewGuid();
    etsyIds[id.ToString()] = userId;
    rows.Add((id, access, refresh, Db.Utc(issuedAt + tokenLife), userId));
}

var stores = new List<(string Shop, string Access, string? Refresh, DateTimeOffset? ExpiresAt)>();
for (var i = 0; i < o.Stores; i++)
{
    var shop = $"shop{i}.myshopify.com";
    var access = $"shpat_{Guid.NewGuid():N}";
    fake.Shopify.AddStore(shop, access);
    stores.Add((shop, access, null, null));
}

for (var i = 0; i < o.ExpiringStores; i++)
{
    var shop = $"expiring{i}.myshopify.com";
    var issuedAt = now - tokenLife * random.NextDouble() * 0.95;
    var (access, refresh) = fake.Shopify.AddExpiringStore(shop, issuedAt);
    stores.Add((shop, access, refresh, issuedAt + tokenLife));
}

await using (var c = new NpgsqlConnection(adminDb))
{
    await c.ExecuteAsync("""
        INSERT INTO etsy_users (user_id, access_token, refresh_token, token_expires_at, etsy_user_id)
        SELECT * FROM unnest(@Ids::uuid[], @Access::text[], @Refresh::text[], @ExpiresAt::timestamp[], @EtsyUserIds::bigint[])
        """, new
    {
        Ids = rows.Select(r => r.Id).ToArray(), Access = rows.Select(r => r.Access).ToArray(), Refresh = rows.Select(r => r.Refresh).ToArray(),
        ExpiresAt = rows.Select(r => r.ExpiresAt).ToArray(), EtsyUserIds = rows.Select(r => r.EtsyUserId).ToArray(),
    });
    await c.ExecuteAsync("""
        INSERT INTO shopify_stores (shop_domain, access_token, refresh_token, token_expires_at, refresh_token_expires_at)
        SELECT s, a, r, e, CASE WHEN r IS NOT NULL THEN now() + interval '90 days' END
        FROM unnest(@Shops::text[], @Access::text[], @Refresh::text[], @ExpiresAt::timestamptz[]) AS t(s, a, r, e)
        """, new
    {
        Shops = stores.Select(s => s.Shop).ToArray(), Access = stores.Select(s => s.Access).ToArray(),
        Refresh = stores.Select(s => s.Refresh).ToArray(), ExpiresAt = stores.Select(s => s.ExpiresAt).ToArray(),
    });
    await c.ExecuteAsync("ANALYZE etsy_users, shopify_stores");
}

// The service as it is deployed: two replicas of `tokenrefresh run`, through PgBouncer, configured by settings alone,
// each scaled to the compressed day (an hour passes in TokenSeconds, so the rate limit is scaled by as much).
var bouncerPort = int.Parse(File.ReadAllText(Path.Combine(o.BouncerDir, "port")).Trim(), CultureInfo.InvariantCulture);
var settings = new Dictionary<string, string?>
{
    ["DATABASE_URL"] = Db.Url(admin, bouncerPort, "tokenrefresh", servicePassword),
    ["ETSY_CLIENT_ID"] = "fake-etsy-keystring",
    ["ETSY_CLIENT_SECRET"] = "fake-etsy-shared-secret",
    ["SHOPIFY_API_KEY"] = "fake-shopify-api-key",
    ["SHOPIFY_API_SECRET"] = "fake-shopify-api-secret",
    ["ETSY_API_BASE_URL"] = fake.EtsyBaseUrl,
    ["SHOPIFY_API_BASE_URL"] = fake.ShopifyBaseUrl,
    ["REFRESH_SCHEDULE"] = $"*/{o.CycleSeconds} * * * * *",
    ["ETSY_REFRESH_MARGIN_MINUTES"] = "1",
    ["SHOPIFY_REFRESH_MARGIN_MINUTES"] = "1",
    ["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = "1",
    ["HTTP_TIMEOUT_SECONDS"] = o.HttpTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
    ["CYCLE_BUDGET_SECONDS"] = Math.Max(5, o.CycleSeconds - 2).ToString(CultureInfo.InvariantCulture),
    ["ETSY_MAX_REQUESTS_PER_SECOND"] = ((int)(10 * scale)).ToString(CultureInfo.InvariantCulture),
    ["LOG_LEVEL"] = "WARNING",
};
var replicas = new List<Replica> { Replica.Start("A", cli, settings, work), Replica.Start("B", cli, settings, work) };

// The day: a warm-up of one token lifetime, then a segment per fault, each starting with its fault.
var start = DateTimeOffset.UtcNow;
var measureFrom = start + TimeSpan.FromSeconds(o.WarmupSeconds);
var cycle = TimeSpan.FromSeconds(o.CycleSeconds);
var segment = TimeSpan.FromSeconds(o.SegmentSeconds);
var faults = new List<Fault>();
var revoked = new Dictionary<string, DateTimeOffset>(); // "etsy:<user_id>" or "shop:<domain>" -> when
var revokedLock = new Lock();
var reconnects = 0;
var stop = new CancellationTokenSource();
var reading = new SemaphoreSlim(1);

async Task TimelineAsync()
{
    await Until(measureFrom);
    var at = measureFrom;
    async Task Window(string name, double seconds, bool outage, Action begin, Action end)
    {
        await Until(at);
        var f = new Fault(name, DateTimeOffset.UtcNow, outage);
        faults.Add(f);
        begin();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        end();
        f.End = DateTimeOffset.UtcNow;
        at += segment;
    }

    async Task Moment(string name, Func<Task> act)
    {
        await Until(at);
        var f = new Fault(name, DateTimeOffset.UtcNow, Outage: false);
        faults.Add(f);
        await act();
        f.End = DateTimeOffset.UtcNow;
        at += segment;
    }

    await Moment("steady state (no fault)", () => Task.CompletedTask);
    await Moment("1% of users revoke access (Etsy users, and stores uninstalling)", () =>
    {
        var when = DateTimeOffset.UtcNow;
        lock (revokedLock)
        {
            foreach (var (id, userId) in etsyIds.Where((_, i) => i % 100 == 7))
            {
                fake.Etsy.RevokeUser(userId);
                revoked["etsy:" + id] = when;
            }

            foreach (var store in stores.Where((s, i) => s.Refresh is null && i % 100 == 7))
            {
                fake.Shopify.Uninstall(store.Shop);
                revoked["shop:" + store.Shop] = when;
            }
        }

        return Task.CompletedTask;
    });
    await Window($"Etsy outage: every call 500 for {o.OutageSeconds} s", o.OutageSeconds, true,
        () => fake.Etsy.PlatformFault = FakeFault.ServerError, () => fake.Etsy.PlatformFault = FakeFault.None);
    await Moment("one replica killed (SIGKILL), started again a cycle later", async () =>
    {
        replicas[0].Kill();
        await Task.Delay(cycle);
        replicas[0] = Replica.Start("A2", cli, settings, work);
    });
    fake.Etsy.RetryAfterSeconds = 2;
    await Window($"Etsy 429 storm (Retry-After: 2) for {o.StormSeconds} s", o.StormSeconds, true,
        () => fake.Etsy.PlatformFault = FakeFault.RateLimited, () => fake.Etsy.PlatformFault = FakeFault.None);
    await Window($"Etsy and Shopify hang (no answer) for {o.StormSeconds} s", o.StormSeconds, true,
        () => fake.Etsy.PlatformFault = fake.Shopify.PlatformFault = FakeFault.Hang,
        () => fake.Etsy.PlatformFault = fake.Shopify.PlatformFault = FakeFault.None);
    await Window($"Shopify 401 wave: every validation rejected for {o.StormSeconds} s", o.StormSeconds, true,
        () => fake.Shopify.PlatformFault = FakeFault.Unauthorized, () => fake.Shopify.PlatformFault = FakeFault.None);
    await Moment("PostgreSQL restarted", () => Shell.RunAsync(Path.Combine(root, "scripts", "pg.sh"), "restart", o.PgDir));
    await Moment("PgBouncer restarted", () => Shell.RunAsync(Path.Combine(root, "scripts", "pgbouncer.sh"), "restart", o.BouncerDir));
    // One more segment, for the last fault to show its end, and for every lost answer to be flagged: it is retried once
    // its lease has run out and, not believed the first time, once more after the first backoff.
    await Until(at);
    await stop.CancelAsync();
}

// The main application, meanwhile: users reconnect (a new grant; the old tokens stop working) while refreshes run.
async Task ReconnectsAsync()
{
    await Until(measureFrom);
    var ids = etsyIds.Keys.ToArray();
    while (!stop.IsCancellationRequested)
    {
        await Task.Delay(TimeSpan.FromSeconds(o.ReconnectEverySeconds), stop.Token).ContinueWith(_ => { });
        if (stop.IsCancellationRequested)
        {
            break;
        }

        var id = ids[random.Next(ids.Length)];
        lock (revokedLock)
        {
            if (revoked.ContainsKey("etsy:" + id))
            {
                continue;
            }
        }

        // A sample never sees the row read before the write and the ledger checked after the revocation.
        await reading.WaitAsync();
        try
        {
            await using var c = new NpgsqlConnection(adminDb);
            // A user whose rotated pair was lost is left to the end of the day, where it is counted as lost and must be flagged.
            var stored = await c.ExecuteScalarAsync<string?>("SELECT refresh_token FROM etsy_users WHERE user_id = @Id::uuid", new { Id = id });
            if (stored is not null && !fake.Etsy.IsValid(stored))
            {
                continue;
            }

            var pair = fake.Etsy.Issue(etsyIds[id], DateTimeOffset.UtcNow);
            // As docs/database.md says the main application writes a reconnected user's tokens: the row, nothing else.
            await c.ExecuteAsync("""
                UPDATE etsy_users SET access_token = @Access, refresh_token = @Refresh, token_expires_at = @ExpiresAt::timestamp,
                       updated_at = now() AT TIME ZONE 'UTC'
                WHERE user_id = @Id::uuid
                """, new { Id = id, Access = pair.AccessToken, Refresh = pair.RefreshToken, ExpiresAt = Db.Utc(DateTimeOffset.UtcNow + tokenLife) });
            fake.Etsy.RevokeUser(etsyIds[id], pair);
            Interlocked.Increment(ref reconnects);
        }
        catch (NpgsqlException)
        {
            // The database restarting: this user reconnects later.
        }
        finally
        {
            reading.Release();
        }
    }
}

async Task Until(DateTimeOffset at)
{
    if (at - DateTimeOffset.UtcNow is { Ticks: > 0 } wait)
    {
        await Task.Delay(wait);
    }
}

Console.WriteLine($"Day: {o.EtsyUsers} Etsy users, {o.Stores} Shopify stores with non-expiring tokens, {o.ExpiringStores} with expiring tokens; " +
                  $"tokens live {o.TokenSeconds} s (an hour of the day passes in {o.TokenSeconds} s), a cycle every {o.CycleSeconds} s, two replicas through PgBouncer; {o.WarmupSeconds + 10 * o.SegmentSeconds} s");
var timeline = TimelineAsync();
var reconnecting = ReconnectsAsync();
var samples = new List<Sample>();
var sampler = new Sampler(adminDb, fake, revoked, revokedLock, reading);
while (!stop.IsCancellationRequested)
{
    var next = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(o.SampleSeconds);
    if (await sampler.TakeAsync() is { } s)
    {
        samples.Add(s);
    }

    if (timeline.IsFaulted)
    {
        await timeline;
    }

    try
    {
        await Task.Delay(Max(TimeSpan.Zero, next - DateTimeOffset.UtcNow), stop.Token);
    }
    catch (OperationCanceledException)
    {
    }
}

await timeline;
await reconnecting;
foreach (var replica in replicas)
{
    await replica.StopAsync();
}

// What was lost: Etsy users whose stored refresh token is no longer valid, though nobody revoked it (a rotation whose
// answer never reached a replica that could store it). Each must be flagged for re-authorisation, never silent.
var end = await Report.LostAsync(adminDb, fake, etsyIds, revoked);
var report = Report.Build(o, faults, samples, end, fake, revoked, reconnects, measureFrom, cycle, scale);
Console.WriteLine(report.Text);
if (o.ReportPath is { } path)
{
    await File.WriteAllTextAsync(path, report.Text);
}

if (report.Misses.Count == 0)
{
    Directory.Delete(work, recursive: true);
}
else
{
    // What an operator would look at: the accounts still unavailable at the end, their state, and the replicas' logs.
    var last = samples.LastOrDefault();
    await using var c = new NpgsqlConnection(adminDb);
    foreach (var key in last?.Invalid.Take(10) ?? [])
    {
        var id = key.StartsWith("etsy:", StringComparison.Ordinal) ? key[5..]
            : (await c.ExecuteScalarAsync<string>("SELECT id::text FROM shopify_stores WHERE shop_domain = @Shop", new { Shop = key[5..] }))!;
        var state = await c.QueryFirstOrDefaultAsync("SELECT platform, consecutive_failures, last_error, last_error_at, next_attempt_at, needs_reauth, unknown_outcome_at, lease_until FROM token_refresh_state WHERE account_id = @Id", new { Id = id });
        Console.WriteLine($"unavailable at the end: {key} ({id}) state: {state}");
    }

    await File.WriteAllLinesAsync(Path.Combine(work, "unavailable.txt"), samples.Where(x => x.Invalid.Count > 0).Select(x => $"{x.At:HH:mm:ss.f} {string.Join(' ', x.Invalid)}"));
    await File.WriteAllLinesAsync(Path.Combine(work, "faults.txt"), faults.Select(f => $"{f.Start:HH:mm:ss.f} {f.End:HH:mm:ss.f} {f.Name}"));
    Console.WriteLine($"The replicas' logs, the faults and the unavailable accounts of each sample: {work}");
}

return o.Assert && report.Misses.Count > 0 ? 1 : 0;

static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
