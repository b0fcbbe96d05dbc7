using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// `run` as a process, as Docker, Railway or Kubernetes run it: it exits non-zero once its heartbeat's deadline passes
/// with no cycle that ran, so that they start it again; and the original's one-liner on a fresh database.
/// </summary>
public sealed class SelfHealingTests(ITestOutputHelper output) : HarnessTests
{
    [Fact]
    public async Task Run_DatabasePaused_ExitsThreeAtItsHeartbeatsDeadline_EachCycleEndingAtItsBudget()
    {
        using var cluster = PostgresServer.StartDedicated();
        await using var db = await TestDatabase.CreateOnAsync(cluster.AdminUrl);
        var heartbeat = Path.Combine(Path.GetTempPath(), $"tokenrefresh-heartbeat-{Guid.NewGuid():N}");
        var settings = new Dictionary<string, string?>(H.Settings)
        {
            ["DATABASE_URL"] = db.Url + "?connect_timeout=3", ["HEARTBEAT_FILE"] = heartbeat, ["REFRESH_SCHEDULE"] = "*/5 * * * * *",
            ["CYCLE_BUDGET_SECONDS"] = "5", ["HTTP_TIMEOUT_SECONDS"] = "5",
        };
        using var run = CliProcess.Start(["run"], settings);
        try
        {
            await run.WaitForOutputAsync("Refresh cycle completed", TimeSpan.FromSeconds(60));
            cluster.Pause();
            var paused = Stopwatch.StartNew();
            // The deadline the last heartbeat gave: no cycle ran after it.
            var code = await run.WaitForExitAsync(TimeSpan.FromSeconds(240));
            var exited = DateTimeOffset.UtcNow;
            var deadline = DateTimeOffset.FromUnixTimeSeconds(long.Parse(File.ReadLines(heartbeat).First(), CultureInfo.InvariantCulture));
            output.WriteLine($"paused the database; `run` exited {code} {paused.Elapsed.TotalSeconds:0.0} s later, {(exited - deadline).TotalSeconds:0.0} s after its heartbeat's deadline");

            Assert.Equal(3, code);
            Assert.InRange((exited - deadline).TotalSeconds, -1, 15);
            Assert.Contains($"No cycle has run by {deadline:yyyy-MM-dd HH:mm:ss} UTC, the heartbeat's deadline", run.Stdout, StringComparison.Ordinal);
            // With the database paused, each cycle failed within its budget and the database's own timeouts (a statement
            // on an open connection: Npgsql's 30 s; a new one: connect_timeout, 3 s here), not after every retry's.
            var failed = run.Stdout.Split('\n').Where(l => l.Contains("Refresh cycle completed in", StringComparison.Ordinal) && l.Contains("ERROR", StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(failed);
            Assert.All(failed, l => Assert.InRange(CycleMilliseconds(l), 0, (5 + 30 + (2 * 3) + 5) * 1000));
            Assert.DoesNotContain(db.Password, run.Stdout + run.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            cluster.Resume();
            File.Delete(heartbeat);
        }
    }

    [Fact]
    public async Task Run_PlatformsNeverAnswer_EachCycleEndsAtItsTimeouts_AndRunKeepsGoing()
    {
        // A platform that takes the request and never answers: the cycle's calls time out, the cycle ends, and the
        // process is healthy (cycles run); it is no reason to start it again.
        var refresh = H.Fake.Etsy.AddAccount(91);
        await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Shopify.AddStore("silent.myshopify.com", "shpat_silent");
        await H.Db.AddShopifyStoreAsync("silent.myshopify.com", "shpat_silent");
        H.Fake.Etsy.PlatformFault = FakePlatforms.FakeFault.Hang;
        H.Fake.Shopify.PlatformFault = FakePlatforms.FakeFault.Hang;
        var heartbeat = Path.Combine(Path.GetTempPath(), $"tokenrefresh-heartbeat-{Guid.NewGuid():N}");
        var settings = new Dictionary<string, string?>(H.Settings)
        {
            ["HEARTBEAT_FILE"] = heartbeat, ["REFRESH_SCHEDULE"] = "*/5 * * * * *", ["CYCLE_BUDGET_SECONDS"] = "5", ["HTTP_TIMEOUT_SECONDS"] = "3",
        };
        using var run = CliProcess.Start(["run"], settings);
        try
        {
            await run.WaitForOutputAsync("Refresh cycle completed in", 2, TimeSpan.FromSeconds(90));
            await run.WaitForOutputAsync("Next cycle at", 2, TimeSpan.FromSeconds(30));

            var cycles = run.Stdout.Split('\n').Where(l => l.Contains("Refresh cycle completed in", StringComparison.Ordinal)).ToList();
            var deadline = DateTimeOffset.FromUnixTimeSeconds(long.Parse(File.ReadLines(heartbeat).First(), CultureInfo.InvariantCulture));
            output.WriteLine(string.Join('\n', cycles));

            Assert.False(run.HasExited, run.Stdout);
            Assert.True(cycles.Count >= 2, run.Stdout);
            // Each within its budget and a call's timeout (and the retry of a timed-out call), never minutes past it.
            Assert.All(cycles, l => Assert.InRange(CycleMilliseconds(l), 0, (5 + (2 * 3) + 5) * 1000));
            // The calls did go out and time out: the first cycle failed both accounts, and the store stayed active.
            Assert.Contains("Etsy: 0/1 refreshed, 1 failed", cycles[0], StringComparison.Ordinal);
            Assert.Contains("Shopify: 0/1 validated, 0 deactivated, 1 failed", cycles[0], StringComparison.Ordinal);
            Assert.True(deadline > DateTimeOffset.UtcNow, $"the heartbeat's deadline {deadline:O} has passed");
        }
        finally
        {
            run.Signal(15);
            await run.WaitForExitAsync(TimeSpan.FromSeconds(30));
            File.Delete(heartbeat);
        }
    }

    [Fact]
    public async Task Once_OnAFreshDatabase_AsTheTablesOwner_CreatesTheServiceTables_AndRefreshes()
    {
        await using var fresh = await TestDatabase.CreateAsync(migrated: false);
        // One role for everything, as the original's users run it: it owns the main application's tables.
        var owner = $"tr_owner_{Guid.NewGuid():N}";
        var password = Guid.NewGuid().ToString("N");
        await fresh.ExecuteAsync($"CREATE ROLE {owner} LOGIN PASSWORD '{password}'");
        try
        {
            await fresh.ExecuteAsync($"ALTER TABLE etsy_users OWNER TO {owner}; ALTER TABLE shopify_stores OWNER TO {owner}; GRANT CREATE ON SCHEMA public TO {owner}");
            var refresh = H.Fake.Etsy.AddAccount(1);
            var id = await fresh.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
            var url = new UriBuilder(fresh.AdminUrl) { UserName = owner, Password = password }.Uri.AbsoluteUri;

            var (code, stdout, stderr) = await CliProcess.RunAsync(["once"], new Dictionary<string, string?>(H.Settings) { ["DATABASE_URL"] = url });

            Assert.True(code == 0, stdout + stderr);
            Assert.Contains($"Created or upgraded the service's own tables at start (this role owns the tables): {string.Join(", ", Persistence.Migrator.Scripts.Select(Path.GetFileNameWithoutExtension).Select(n => n!["TokenRefresh.Persistence.Migrations.".Length..]))}", stdout, StringComparison.Ordinal);
            Assert.Contains($"Etsy account {id}: refreshed", stdout, StringComparison.Ordinal);
            Assert.Equal(owner, await fresh.ScalarAsync<string>("SELECT tableowner FROM pg_tables WHERE tablename = 'token_refresh_state'"));
        }
        finally
        {
            await fresh.ExecuteAsync($"DROP OWNED BY {owner} CASCADE");
            using var admin = PostgresServer.OpenAdmin();
            await Dapper.SqlMapper.ExecuteAsync(admin, $"DROP ROLE {owner}");
        }
    }

    [Fact]
    public async Task Once_OnAFreshDatabase_AsALeastPrivilegeRole_SaysToMigrateAsTheOwner_AndCreatesNothing()
    {
        await using var fresh = await TestDatabase.CreateAsync(migrated: false);

        var (code, stdout, _) = await CliProcess.RunAsync(["once"], new Dictionary<string, string?>(H.Settings) { ["DATABASE_URL"] = fresh.Url });

        Assert.Equal(2, code);
        Assert.Contains("and this role does not own the tables: run `tokenrefresh migrate` as their owner (docs/database.md)", stdout, StringComparison.Ordinal);
        Assert.False(await fresh.ScalarAsync<bool>("SELECT to_regclass('token_refresh_state') IS NOT NULL"));
    }

    // "Refresh cycle completed in 5012 ms. ..." → 5012.
    private static double CycleMilliseconds(string line)
    {
        var from = line.IndexOf("completed in ", StringComparison.Ordinal) + "completed in ".Length;
        return double.Parse(line[from..line.IndexOf(" ms", from, StringComparison.Ordinal)], CultureInfo.InvariantCulture);
    }
}
