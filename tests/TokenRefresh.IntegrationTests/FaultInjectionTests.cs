using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// Faults between the platform's answer and the write, and many processes at once: every rotated pair that
/// was received is stored, and no refresh token is ever sent twice.
/// </summary>
public sealed class FaultInjectionTests(ITestOutputHelper output) : HarnessTests
{


    [Fact]
    public async Task ConnectionLostBetweenTheAnswerAndTheWrite_ThePairIsStoredOnANewConnection()
    {
        var users = await Chains.DueUsersAsync(H, 3);
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "1"; // the cut must hit the write of the account whose answer is on its way, not another's claim
        // Cut every connection of the service the moment Etsy has rotated the token, before the answer leaves.
        H.Fake.Etsy.OnRotated = async _ => await H.Db.ExecuteAsync(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'tokenrefresh' AND datname = current_database()");

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 3/3 refreshed, 0 failed", summary.Platforms[0].ToString());
        await Chains.AssertNoTokenLostAsync(H, users);
        // A write finds its pooled connection cut, unless the claiming loop opened a fresh one meanwhile (the next permit).
        Assert.InRange(logs.Count(l => l.Message.Contains("the rotated pair was stored after", StringComparison.Ordinal)), 1, 3);
        Assert.DoesNotContain(logs, l => l.Level == LogLevel.Critical);
    }

    [Fact]
    public async Task StatementTimeoutOnTheWrite_IsRetriedUntilItStores()
    {
        var users = await Chains.DueUsersAsync(H, 2);
        await H.Db.ExecuteAsync($"""
            CREATE SEQUENCE slow_once;
            CREATE FUNCTION slow_first_update() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
            BEGIN
                IF nextval('slow_once') = 1 THEN PERFORM pg_sleep(3); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER slow_first_update BEFORE UPDATE ON etsy_users FOR EACH ROW EXECUTE FUNCTION slow_first_update();
            ALTER DATABASE {H.Db.Name} SET statement_timeout = '1s';
            """);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 2/2 refreshed, 0 failed", summary.Platforms[0].ToString());
        await Chains.AssertNoTokenLostAsync(H, users);
        Assert.Single(logs, l => l.Message.Contains("the rotated pair was stored after 2 attempts", StringComparison.Ordinal));
    }

    [Fact]
    public async Task DatabaseRestartInABusyCycle_LosesNoToken()
    {
        using var cluster = PostgresServer.StartDedicated();
        await using var db = await TestDatabase.CreateOnAsync(cluster.AdminUrl);
        await using var h = await ServiceHarness.StartAsync(db);
        var users = await Chains.DueUsersAsync(h, 60);
        h.Fake.Latency = TimeSpan.FromMilliseconds(40);
        Task? restart = null;
        var rotations = 0;
        h.Fake.Etsy.OnRotated = _ =>
        {
            // Exactly one rotation is the 15th, however many happen at once.
            if (Interlocked.Increment(ref rotations) == 15)
            {
                restart = Task.Run(() => cluster.Restart());
            }

            return Task.CompletedTask;
        };

        var cycleStart = DateTimeOffset.UtcNow;
        var (first, logs) = await h.RunCycleAsync();
        var cycleEnd = DateTimeOffset.UtcNow;
        await restart!;
        Npgsql.NpgsqlConnection.ClearAllPools(); // the test's own pooled connections died with the restart
        var retriedWrites = logs.Count(l => l.Message.Contains("the rotated pair was stored after", StringComparison.Ordinal));
        output.WriteLine($"cycle during the restart: {first}; pairs stored after retries: {retriedWrites}; " +
            $"accounts failed on the database: {logs.Count(l => l.Message.Contains("database error", StringComparison.Ordinal))}");
        // The server came back up while the cycle ran (its permits, claims and writes met the restart and were retried).
        Assert.InRange(await h.Db.ScalarAsync<DateTime>("SELECT pg_postmaster_start_time()"), cycleStart.UtcDateTime, cycleEnd.UtcDateTime);
        await Chains.AssertNoTokenLostAsync(h, users);
        Assert.DoesNotContain(logs, l => l.Level == LogLevel.Critical);

        // The accounts that could not be claimed while the server was down are refreshed next time.
        await h.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = NULL");
        var (second, _) = await h.RunCycleAsync();
        output.WriteLine($"next cycle: {second}");
        await Chains.AssertNoTokenLostAsync(h, users);
        Assert.All(users, u => Assert.NotNull(h.Fake.Etsy.IssuedFor(u.Refresh)));
        Assert.Empty(h.Fake.Etsy.TokensUsedMoreThanOnce);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task ConcurrentCycles_EveryRefreshTokenIsUsedExactlyOnce(int cycles)
    {
        var users = await Chains.DueUsersAsync(H, 300);
        H.Fake.Latency = TimeSpan.FromMilliseconds(15);

        var summaries = await Chains.ConcurrentCyclesAsync(H, cycles);

        var refreshed = summaries.Sum(s => s.Platforms[0].Succeeded);
        var perToken = users.Select(u => H.Fake.Etsy.CallsFor(u.Refresh)).ToList();
        output.WriteLine($"{cycles} concurrent cycles over {users.Count} due accounts: refreshed {refreshed} " +
            $"({string.Join(" + ", summaries.Select(s => s.Platforms[0].Succeeded))}), calls per refresh token: min {perToken.Min()}, max {perToken.Max()}, " +
            $"total Etsy calls {H.Fake.Etsy.TotalCalls}; " + string.Join(" / ", summaries.Select(s => $"{s} in {s.Platforms[0].Duration}")));
        Assert.Equal(users.Count, refreshed);
        Assert.All(perToken, n => Assert.Equal(1, n));
        Assert.Empty(H.Fake.Etsy.TokensUsedMoreThanOnce);
        Assert.Equal(users.Count, H.Fake.Etsy.TotalCalls);
        await Chains.AssertNoTokenLostAsync(H, users);
    }

    [Fact]
    public async Task CliKilledWithSigkillMidCycle_NoRowHalfUpdated_TheNextCycleCompletes()
    {
        var users = await Chains.DueUsersAsync(H, 40);
        H.Fake.Latency = TimeSpan.FromMilliseconds(100);
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "4";
        using (var cli = CliProcess.Start(["once"], H.Settings))
        {
            await WaitUntilAsync(() => H.Fake.Etsy.Rotations >= 5);
            cli.Signal(9);
            Assert.Equal(137, await cli.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }

        // Etsy finishes what it received, as a real server does: the requests in flight at the kill still rotate.
        await H.Fake.WhenIdleAsync(TimeSpan.FromSeconds(30));

        var rotatedBeforeKill = users.Count(u => H.Fake.Etsy.IssuedFor(u.Refresh) is not null);
        var storedBeforeKill = 0;
        var lostInFlight = 0;
        foreach (var (id, original) in users)
        {
            var row = await H.Db.GetEtsyUserAsync(id);
            var issued = H.Fake.Etsy.IssuedFor(original);
            // Every row is whole: either untouched, or the issued pair with its new expiry.
            if (row.RefreshToken == original)
            {
                Assert.Equal("old-access-token", row.AccessToken);
                Assert.True(row.ExpiresAt < DateTime.UtcNow);
                lostInFlight += issued is null ? 0 : 1;
            }
            else
            {
                Assert.Equal(issued!.Value.RefreshToken, row.RefreshToken);
                Assert.Equal(issued.Value.AccessToken, row.AccessToken);
                Assert.True(row.ExpiresAt > DateTime.UtcNow.AddMinutes(50));
                storedBeforeKill++;
            }
        }

        H.Fake.Latency = TimeSpan.Zero;
        var (next, nextLogs) = await H.RunCycleAsync();
        // The killed process's leases are still in force: those accounts (claimed, their requests perhaps sent) are
        // counted as due, and left alone.
        var leased = (int)await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE lease_until IS NOT NULL");
        output.WriteLine($"killed after {rotatedBeforeKill} rotations: {storedBeforeKill} stored, {lostInFlight} answered after the kill, {leased} leased; next cycle: {next}");

        Assert.InRange(leased, Math.Max(1, lostInFlight), 4); // at most REFRESH_MAX_CONCURRENCY in flight at the kill
        Assert.Contains(nextLogs, l => l.Message == $"Etsy: found {users.Count - storedBeforeKill} accounts due");
        Assert.Equal(users.Count - storedBeforeKill - leased, next.Platforms[0].Found);
        Assert.Equal(users.Count - storedBeforeKill - leased, next.Platforms[0].Succeeded);
        Assert.Empty(H.Fake.Etsy.TokensUsedMoreThanOnce);

        // Once the leases have run out (3 minutes: the budget, the HTTP timeout and the write's 30 s): the accounts whose
        // request was answered after the kill get invalid_grant, which is not believed the first time (the claim ran out
        // without an outcome); the others, whose request never left, are refreshed.
        H.Time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(4));
        var (after, _) = await H.RunCycleAsync();
        output.WriteLine($"after the leases ran out: {after}");

        Assert.Equal(leased - lostInFlight, after.Platforms[0].Succeeded);
        Assert.Equal(lostInFlight, after.Platforms[0].Failed);
        foreach (var (id, _) in users.Where(u => H.Fake.Etsy.IssuedFor(u.Refresh) is not null && H.Fake.Etsy.TokensUsedMoreThanOnce.Contains(u.Refresh)))
        {
            var state = (await H.Db.GetStateAsync("etsy", id))!;
            Assert.Equal(TokenRefresh.Persistence.AccountState.SuspectInvalidGrant, state.LastError);
            Assert.False(state.NeedsReauth);
        }

        // The only tokens sent twice are those whose first request was answered after the kill, long after it.
        Assert.Equal(lostInFlight, H.Fake.Etsy.TokensUsedMoreThanOnce.Count);
    }

    [Fact]
    public async Task CliSigtermMidCycle_FinishesTheAccountInFlight_StoresEveryRotatedPair()
    {
        // 200 accounts at 200 ms, 16 at a time, take 2.5 s: the signal lands mid-cycle on any machine.
        var users = await Chains.DueUsersAsync(H, 200);
        H.Fake.Latency = TimeSpan.FromMilliseconds(200);
        using var cli = CliProcess.Start(["run"], H.Settings);
        await WaitUntilAsync(() => H.Fake.Etsy.Rotations >= 3);

        cli.Signal(15);
        Assert.Equal(0, await cli.WaitForExitAsync(TimeSpan.FromSeconds(30)));

        var rotated = users.Where(u => H.Fake.Etsy.IssuedFor(u.Refresh) is not null).ToList();
        output.WriteLine($"SIGTERM after {rotated.Count} rotations; all stored; output tail: {cli.Stdout[^Math.Min(300, cli.Stdout.Length)..]}");
        Assert.InRange(rotated.Count, 3, users.Count - 1);
        await Chains.AssertNoTokenLostAsync(H, users);
        Assert.Contains("shutting down", cli.Stdout, StringComparison.Ordinal);
        Assert.Contains("left for the next cycle", cli.Stdout, StringComparison.Ordinal);
    }

    private static Task WaitUntilAsync(Func<bool> condition) => Poll.UntilAsync(condition, TimeSpan.FromSeconds(60), everyMs: 5);
}
