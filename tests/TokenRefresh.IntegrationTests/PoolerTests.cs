using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TokenRefresh.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// The service through a real PgBouncer (Debian's 1.18, which carries no prepared statement in transaction mode), as
/// teams on Supabase, Heroku, Railway or Azure reach their database: the core scenarios, restarts on either side of
/// the pooler, and the operators' commands. No rotated token is lost in any of them.
/// </summary>
public sealed class PoolerTests(ITestOutputHelper output) : HarnessTests
{
    private void ThroughPooler(Pooler pooler) => H.Settings["DATABASE_URL"] = pooler.Through(H.Db.Url);

    [Theory]
    [InlineData("transaction")]
    [InlineData("session")]
    public async Task Cycle_ThroughPgBouncer_RefreshesValidatesAndDeactivates(string mode)
    {
        ThroughPooler(Pooler.Shared(mode));
        var users = await Chains.DueUsersAsync(H, 40);
        var gone = await Chains.FineAndRevokedStoresAsync(H);

        var (summary, logs) = await H.RunCycleAsync();
        var (again, _) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 40/40 refreshed, 0 failed; Shopify: 1/2 validated, 1 deactivated, 0 failed", summary.ToString());
        Assert.Equal("Etsy: 0/0 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed", again.ToString());
        Assert.False((await H.Db.GetShopifyStoreAsync(gone)).IsActive);
        await Chains.AssertNoTokenLostAsync(H, users);
        Assert.DoesNotContain(logs, l => l.Level >= LogLevel.Error);
    }

    [Fact]
    public async Task ConcurrentCycles_ThroughATransactionPooler_EveryRefreshTokenIsUsedOnce()
    {
        ThroughPooler(Pooler.Shared("transaction"));
        var users = await Chains.DueUsersAsync(H, 150);
        H.Fake.Latency = TimeSpan.FromMilliseconds(10);

        var summaries = await Chains.ConcurrentCyclesAsync(H, 3);

        Assert.Equal(users.Count, summaries.Sum(s => s.Platforms[0].Succeeded));
        Assert.Empty(H.Fake.Etsy.TokensUsedMoreThanOnce);
        Assert.Equal(users.Count, H.Fake.Etsy.TotalCalls);
        await Chains.AssertNoTokenLostAsync(H, users);
    }

    [Fact]
    public async Task PostgreSqlRestartBehindThePooler_LosesNoToken()
    {
        using var cluster = PostgresServer.StartDedicated();
        using var pooler = Pooler.Start(cluster.AdminUrl, "transaction");
        await using var db = await TestDatabase.CreateOnAsync(cluster.AdminUrl);
        await using var h = await ServiceHarness.StartAsync(db);
        h.Settings["DATABASE_URL"] = pooler.Through(db.Url);

        // The main application holds the 15th user's row, so the write of its rotated pair waits inside PostgreSQL, where the
        // restart cuts it (a pooler would hold a statement that had not reached the server until the server was back).
        var (cycleStart, cycleEnd) = await RestartMidCycleAsync(h, async user =>
        {
            var holder = await h.Db.OpenAsync();
            var hold = await holder.BeginTransactionAsync();
            await holder.ExecuteAsync($"SELECT 1 FROM etsy_users WHERE {h.Db.EtsyKey} = @Id FOR UPDATE", new { user.Id }, hold);
            return Task.Run(async () =>
            {
                await BlockedWriteAsync(h.Db);
                cluster.Restart(); // straight back up: the pooler's own login retry (15 s) would hold it longer
                try
                {
                    await holder.DisposeAsync();
                }
                catch (Npgsql.NpgsqlException)
                {
                    // Cut by the restart, as it should be.
                }
            });
        });

        // The server came back up while the cycle ran: its postmaster started between the cycle's start and its end.
        Assert.InRange(await h.Db.ScalarAsync<DateTime>("SELECT pg_postmaster_start_time()"), cycleStart.UtcDateTime, cycleEnd.UtcDateTime);
    }

    [Fact]
    public async Task PoolerRestartMidCycle_LosesNoToken()
    {
        using var pooler = Pooler.Start(PostgresServer.AdminUrl, "transaction");
        ThroughPooler(pooler);
        DateTimeOffset? restarted = null;

        // The pooler stops before the 15th user's answer goes out, so the write of its rotated pair meets it down.
        var (cycleStart, cycleEnd) = await RestartMidCycleAsync(H, async _ =>
        {
            var restarting = Task.Run(() =>
            {
                pooler.Restart(DownSeconds);
                restarted = DateTimeOffset.UtcNow;
            });
            await RefusedAsync(pooler.Port);
            return restarting;
        });

        // The pooler was down and up again (its script returns once the new one listens) while the cycle ran.
        Assert.InRange(restarted!.Value, cycleStart, cycleEnd);
    }

    // How long what restarts stays down: the writes meanwhile fail and are retried until it is back.
    private const double DownSeconds = 1;

    // At the 15th rotation of 60 due users at 40 ms, before Etsy's answer goes out, `meet` makes that pair's write meet a
    // restart (returning the restart), which stays down a second. Nothing is lost, at least one received pair is stored
    // only on a retry, and the next cycle finishes the rest. Returns the first cycle's span.
    private async Task<(DateTimeOffset Start, DateTimeOffset End)> RestartMidCycleAsync(ServiceHarness h, Func<(Guid Id, string Refresh), Task<Task>> meet)
    {
        var users = await Chains.DueUsersAsync(h, 60);
        h.Fake.Latency = TimeSpan.FromMilliseconds(40);
        Task? restarting = null;
        var rotations = 0;
        h.Fake.Etsy.OnRotated = async refresh =>
        {
            if (Interlocked.Increment(ref rotations) == 15)
            {
                restarting = await meet(users.Single(u => u.Refresh == refresh));
            }
        };

        // Behind PgBouncer, a server restart can make the pooler refuse logins for its server_login_retry (15 s), and the
        // cycle then fails as a whole (as documented: the next one runs soon); what it received is stored all the same.
        var cycleStart = DateTimeOffset.UtcNow;
        var (first, logs, failure) = await h.TryRunCycleAsync();
        var cycleEnd = DateTimeOffset.UtcNow;
        Assert.True(failure is null || failure.InnerException is Npgsql.NpgsqlException, failure?.ToString());
        await restarting!;
        Npgsql.NpgsqlConnection.ClearAllPools(); // the test's own pooled connections died too
        await Chains.AssertNoTokenLostAsync(h, users);
        Assert.DoesNotContain(logs, l => l.Level == LogLevel.Critical);
        var retried = logs.Count(l => l.Message.Contains("the rotated pair was stored after", StringComparison.Ordinal));

        await h.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = NULL");
        var (second, _) = await h.RunCycleAsync();
        output.WriteLine($"during the restart: {first}; next cycle: {second}; stored after retries: {retried}");
        Assert.True(retried >= 1, "no write met the restart: it proved nothing about retries");
        await Chains.AssertNoTokenLostAsync(h, users);
        Assert.All(users, u => Assert.NotNull(h.Fake.Etsy.IssuedFor(u.Refresh)));
        Assert.Empty(h.Fake.Etsy.TokensUsedMoreThanOnce);
        return (cycleStart, cycleEnd);
    }

    // Until the service's write waits for a row lock inside PostgreSQL.
    private static Task BlockedWriteAsync(TestDatabase db) => Poll.UntilAsync(
        async () => await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE usename = 'tokenrefresh' AND wait_event_type = 'Lock'") > 0,
        TimeSpan.FromSeconds(30));

    // Until nothing listens on the port any more (the pooler is down).
    private static Task RefusedAsync(int port) => Poll.UntilAsync(async () =>
    {
        using var probe = new System.Net.Sockets.TcpClient();
        try
        {
            await probe.ConnectAsync(System.Net.IPAddress.Loopback, port);
            return false;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return true;
        }
    }, TimeSpan.FromSeconds(30));

    [Theory]
    [InlineData("transaction")]
    [InlineData("session")]
    public async Task OperatorsCommands_ThroughPgBouncer_Work(string mode)
    {
        ThroughPooler(Pooler.Shared(mode));
        await H.Db.AddExpiringColumnsAsync();
        var refresh = H.Fake.Etsy.AddAccount(1);
        var user = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(50));
        H.Fake.Shopify.AddStore("classic.myshopify.com", "shpat_classic");
        await H.Db.AddShopifyStoreAsync("classic.myshopify.com", "shpat_classic");

        var force = await CliProcess.RunAsync(["refresh", "--etsy-user", user.ToString()], H.Settings);
        var validate = await CliProcess.RunAsync(["refresh", "--shop", "classic.myshopify.com"], H.Settings);
        var status = await CliProcess.RunAsync(["status", "--json"], H.Settings);
        var migrate = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "classic.myshopify.com", "--yes"], H.Settings);

        Assert.Equal((0, $"Etsy account {user}: refreshed"), (force.ExitCode, force.Stdout.Trim()));
        Assert.Equal(0, validate.ExitCode);
        Assert.Equal(0, status.ExitCode);
        Assert.StartsWith("{", status.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, migrate.ExitCode);
        Assert.True(H.Fake.Shopify.IsExpiring("classic.myshopify.com"));
        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(user)).RefreshToken);
    }

    [Fact]
    public async Task Migrate_TwiceAtOnceThroughATransactionPooler_AppliesEachScriptOnce()
    {
        await using var fresh = await TestDatabase.CreateAsync(migrated: false);
        var settings = new Dictionary<string, string?>(H.Settings) { ["DATABASE_URL"] = Pooler.Shared("transaction").Through(fresh.AdminUrl) };

        var runs = await Task.WhenAll(CliProcess.RunAsync(["migrate"], settings), CliProcess.RunAsync(["migrate"], settings));

        Assert.All(runs, r => Assert.Equal(0, r.ExitCode));
        Assert.Equal(1, runs.Count(r => r.Stdout.Contains("Applied: 001_account_state, 002_account_id_text, 003_leases_and_shared_rate, 004_reauth_signals, 005_notices, 006_refresh_token_ending, 007_validation_schedule, 008_notice_detail", StringComparison.Ordinal)));
        Assert.Equal(8, await fresh.ScalarAsync<long>("SELECT count(*) FROM token_refresh_migrations"));
    }
}
