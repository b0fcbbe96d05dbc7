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
        await RestartMidCycleAsync(h, cluster.Restart);
    }

    [Fact]
    public async Task PoolerRestartMidCycle_LosesNoToken()
    {
        using var pooler = Pooler.Start(PostgresServer.AdminUrl, "transaction");
        ThroughPooler(pooler);
        await RestartMidCycleAsync(H, pooler.Restart);
    }

    // Restarts something at the 15th rotation of 60 due users at 40 ms; then nothing is lost, and the next cycle finishes the rest.
    private async Task RestartMidCycleAsync(ServiceHarness h, Action restart)
    {
        var users = await Chains.DueUsersAsync(h, 60);
        h.Fake.Latency = TimeSpan.FromMilliseconds(40);
        Task? restarting = null;
        var rotations = 0;
        h.Fake.Etsy.OnRotated = _ =>
        {
            if (Interlocked.Increment(ref rotations) == 15)
            {
                restarting = Task.Run(restart);
            }

            return Task.CompletedTask;
        };

        var (first, logs) = await h.RunCycleAsync();
        await restarting!;
        Npgsql.NpgsqlConnection.ClearAllPools(); // the test's own pooled connections died too
        await Chains.AssertNoTokenLostAsync(h, users);
        Assert.DoesNotContain(logs, l => l.Level == LogLevel.Critical);

        await h.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = NULL");
        var (second, _) = await h.RunCycleAsync();
        output.WriteLine($"during the restart: {first}; next cycle: {second}; stored after retries: " +
            logs.Count(l => l.Message.Contains("stored after", StringComparison.Ordinal)));
        await Chains.AssertNoTokenLostAsync(h, users);
        Assert.All(users, u => Assert.NotNull(h.Fake.Etsy.IssuedFor(u.Refresh)));
        Assert.Empty(h.Fake.Etsy.TokensUsedMoreThanOnce);
    }

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
        Assert.Equal(1, runs.Count(r => r.Stdout.Contains("Applied: 001_account_state, 002_account_id_text, 003_leases_and_shared_rate, 004_reauth_signals, 005_notices, 006_refresh_token_ending", StringComparison.Ordinal)));
        Assert.Equal(6, await fresh.ScalarAsync<long>("SELECT count(*) FROM token_refresh_migrations"));
    }
}
