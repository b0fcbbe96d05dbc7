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

// The fakes, with tokens as short-lived as the day is compressed, reached as production reaches the platforms: TLS at
// their own names (api.etsy.com, {shop}.myshopify.com), through a CONNECT proxy, trusting a CA made for this run.
await using var fake = await FakePlatformServer.StartAsync(certificate: TestCertificates.Server);
await using var proxy = PlatformProxy.Start(fake);
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
// each scaled to the compressed day (an hour passes in TokenSeconds). Etsy's limit is set low enough that the tokens
// that expire in the long outage make a backlog (--etsy-rate; "scaled": Etsy's default 10/s, scaled as the day is).
var bouncerPort = int.Parse(File.ReadAllText(Path.Combine(o.BouncerDir, "port")).Trim(), CultureInfo.InvariantCulture);
var etsyRate = o.EtsyRate ?? (int)(10 * scale);
var settings = new Dictionary<string, string?>
{
    ["DATABASE_URL"] = Db.Url(admin, bouncerPort, "tokenrefresh", servicePassword),
    ["ETSY_CLIENT_ID"] = "fake-etsy-keystring",
    ["ETSY_CLIENT_SECRET"] = "fake-etsy-shared-secret",
    ["SHOPIFY_API_KEY"] = "fake-shopify-api-key",
    ["SHOPIFY_API_SECRET"] = "fake-shopify-api-secret",
    ["REFRESH_SCHEDULE"] = $"*/{o.CycleSeconds} * * * * *",
    ["ETSY_REFRESH_MARGIN_MINUTES"] = ReportWriter.Margin.TotalMinutes.ToString(CultureInfo.InvariantCulture),
    ["SHOPIFY_REFRESH_MARGIN_MINUTES"] = ReportWriter.Margin.TotalMinutes.ToString(CultureInfo.InvariantCulture),
    ["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = o.ValidateMinutes.ToString(CultureInfo.InvariantCulture),
    ["HTTP_TIMEOUT_SECONDS"] = o.HttpTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
    ["CYCLE_BUDGET_SECONDS"] = Math.Max(5, o.CycleSeconds - 2).ToString(CultureInfo.InvariantCulture),
    ["ETSY_MAX_REQUESTS_PER_SECOND"] = etsyRate.ToString(CultureInfo.InvariantCulture),
    // Each cycle's summary line proves the replica works; each account's success stays out of the log.
    ["LOG_LEVEL"] = "INFO",
    ["LOG_ACCOUNT_SUCCESS"] = "false",
};
foreach (var (name, value) in proxy.Environment())
{
    settings[name] = value;
}

var start = DateTimeOffset.UtcNow;
var measureFrom = start + TimeSpan.FromSeconds(o.WarmupSeconds);
var cycle = TimeSpan.FromSeconds(o.CycleSeconds);
var world = new DayWorld(o, root, cli, work, adminDb, fake, settings, etsyIds, [.. stores.Where(s => s.Refresh is null).Select(s => s.Shop)], tokenLife);
var timeline = new Timeline(world, measureFrom, random);
timeline.Replicas.AddRange([Replica.Start("A", cli, settings, work), Replica.Start("B", cli, settings, work)]);
Console.WriteLine($"Day: {o.EtsyUsers} Etsy users, {o.Stores} Shopify stores with non-expiring tokens, {o.ExpiringStores} with expiring tokens; " +
                  $"tokens live {o.TokenSeconds} s (an hour of the day passes in {o.TokenSeconds} s), a cycle every {o.CycleSeconds} s, two replicas through PgBouncer; " +
                  $"about {o.WarmupSeconds + 10 * o.SegmentSeconds + o.OutageSeconds} s");
using var stop = new CancellationTokenSource();
var running = timeline.RunAsync(stop);
var reconnecting = timeline.ReconnectsAsync(stop.Token);
var samples = new List<Sample>();
var sampler = new Sampler(adminDb, fake, timeline.Revoked, timeline.RevokedLock, timeline.Reading, ReportWriter.Margin);
while (!stop.IsCancellationRequested)
{
    var next = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(o.SampleSeconds);
    samples.Add(await sampler.TakeAsync());
    if (running.IsFaulted)
    {
        await running;
    }

    await Task.Delay(Max(TimeSpan.Zero, next - DateTimeOffset.UtcNow), stop.Token).ContinueWith(_ => { }, CancellationToken.None);
}

await running;
await reconnecting;
var replicaReports = new List<ReplicaReport>();
foreach (var replica in Replica.Started)
{
    var problem = await replica.StopAsync();
    replicaReports.Add(new ReplicaReport(replica.Name, replica.Cycles, problem));
}

// What was lost: Etsy users whose stored refresh token is no longer valid, though nobody revoked it (a rotation whose
// answer never reached a replica that could store it). Each must be flagged for re-authorisation, never silent.
var lost = await Report.LostAsync(adminDb, fake, etsyIds, timeline.Revoked);
var day = new DayRecord(o, timeline.Faults, samples, lost, replicaReports, timeline.Revoked, timeline.Reconnects, measureFrom, cycle, scale, etsyRate, timeline.Killed, proxy.Connections);
var report = Report.Build(day, fake);
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
    await Diagnostics.WriteAsync(adminDb, work, samples, timeline.Faults);
}

return o.Assert && report.Misses.Count > 0 ? 1 : 0;

static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
