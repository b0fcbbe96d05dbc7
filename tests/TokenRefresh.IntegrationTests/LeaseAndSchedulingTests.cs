using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// Claims without a held transaction, limits across replicas, and fair scheduling, with real processes where the point
/// is about processes: the database ends idle transactions after a second (as Supabase, Neon and poolers do), the
/// platforms answer slowly, processes start together, one is killed mid-call, another starts while its requests are in
/// flight. No token is ever sent twice, none is lost, no session sits idle in a transaction.
/// </summary>
[Collection(TimingSensitive.Name)]
public sealed partial class LeaseAndSchedulingTests(ITestOutputHelper output) : HarnessTests
{
    private static readonly TimeSpan SlowAnswer = TimeSpan.FromSeconds(2.5);

    private async Task EndIdleTransactionsAfterOneSecondAsync() =>
        await H.Db.ExecuteAsync($"ALTER DATABASE {H.Db.Name} SET idle_in_transaction_session_timeout = '1s'");

    // The platforms answer in 2.5 s, well within the HTTP timeout.
    private void SlowPlatforms()
    {
        H.Fake.Latency = SlowAnswer;
        H.Settings["HTTP_TIMEOUT_SECONDS"] = "10";
    }

    private async Task<List<(Guid Id, string Domain, string Refresh)>> DueExpiringStoresAsync(int count)
    {
        await H.Db.AddExpiringColumnsAsync();
        var stores = new List<(Guid, string, string)>();
        for (var i = 0; i < count; i++)
        {
            var domain = $"expiring{i}.myshopify.com";
            var (access, refresh) = H.Fake.Shopify.AddExpiringStore(domain);
            stores.Add((await H.Db.AddExpiringStoreAsync(domain, access, refresh, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(60)), domain, refresh));
        }

        return stores;
    }

    // No more than the limit in any one-second window of the moments the processes sent their requests (their DEBUG
    // lines): the 11th request after any request left at least a second later, less 50 ms for a permit used a moment late.
    private static void AssertSentAtMostPerSecond(IEnumerable<string> outputs, int perSecond)
    {
        var times = outputs.SelectMany(o => SentAt().Matches(o)).Select(SentTime).Order().ToList();
        Assert.NotEmpty(times);
        for (var i = 0; i + perSecond < times.Count; i++)
        {
            var span = times[i + perSecond] - times[i];
            Assert.True(span >= TimeSpan.FromSeconds(0.95), $"{perSecond + 1} requests sent within {span.TotalMilliseconds:0} ms, from request {i}");
        }
    }

    // At the fake, where a loaded machine may deliver a request up to a second late (a new connection's TLS handshake
    // through the proxy, a process still starting), so that a second's requests arrive beside the next: at most three
    // seconds' worth in any two seconds. Two processes each keeping the limit on their own would send 40 in two seconds.
    private static void AssertArrivedAtMostPerSecond(IEnumerable<DateTimeOffset> arrivals, int perSecond)
    {
        var times = arrivals.Order().ToList();
        for (var i = 0; i < times.Count; i++)
        {
            var inWindow = times.Skip(i).TakeWhile(t => t - times[i] < TimeSpan.FromSeconds(2)).Count();
            Assert.True(inWindow <= 3 * perSecond + 1, $"{inWindow} requests arrived within two seconds, from request {i}");
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"Etsy account \S+: sending the refresh request at (\d\d:\d\d:\d\d\.\d{3}) UTC")]
    private static partial System.Text.RegularExpressions.Regex SentAt();

    private static TimeSpan SentTime(System.Text.RegularExpressions.Match m) =>
        TimeSpan.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    // A time of day after another, across midnight too.
    private static TimeSpan After(TimeSpan reference, TimeSpan time) => (time - reference) switch
    {
        var d when d < TimeSpan.FromHours(-12) => d + TimeSpan.FromDays(1),
        var d when d > TimeSpan.FromHours(12) => d - TimeSpan.FromDays(1),
        var d => d,
    };

    [Xunit.Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task SeveralCliProcessesAtOnce_EachTokenSentOnce_NoneLost_TheEtsyLimitHeldByAllTogether(int processes)
    {
        await EndIdleTransactionsAfterOneSecondAsync();
        var users = await Chains.DueUsersAsync(H, 30);
        var stores = await DueExpiringStoresAsync(10);
        SlowPlatforms();

        var outputs = new List<string>();
        await using (var watch = new IdleTransactionWatch(H.Db))
        {
            var clis = Enumerable.Range(0, processes).Select(_ => CliProcess.Start(["once"], H.Settings)).ToList();
            var codes = await Task.WhenAll(clis.Select(c => c.WaitForExitAsync(TimeSpan.FromMinutes(2))));
            foreach (var cli in clis)
            {
                outputs.Add(cli.Stdout);
                output.WriteLine(cli.Stdout.Split('\n').LastOrDefault(l => l.Contains("Refresh cycle completed", StringComparison.Ordinal)));
                cli.Dispose();
            }

            Assert.All(codes, code => Assert.Equal(0, code));
            Assert.True(watch.Samples > 10);
            Assert.Equal(TimeSpan.Zero, watch.Longest);
        }

        Assert.Empty(H.Fake.Etsy.TokensUsedMoreThanOnce);
        Assert.Empty(H.Fake.Shopify.RefreshTokensUsedMoreThanOnce);
        Assert.Equal(users.Count, H.Fake.Etsy.TotalCalls);
        Assert.All(users, u => Assert.NotNull(H.Fake.Etsy.IssuedFor(u.Refresh)));
        await Chains.AssertNoTokenLostAsync(H, users);
        foreach (var (id, domain, refresh) in stores)
        {
            Assert.Equal(1, H.Fake.Shopify.RefreshCallsFor(refresh));
            Assert.Equal(H.Fake.Shopify.CurrentRefreshToken(domain), (await H.Db.GetExpiringStoreAsync(id)).RefreshToken);
        }

        // ETSY_MAX_REQUESTS_PER_SECOND as shipped (10), for every process together.
        var first = H.Fake.Etsy.CallTimes.Min();
        output.WriteLine(string.Join(", ", H.Fake.Etsy.CallTimes.Order().Select(t => $"{(t - first).TotalSeconds:0.000}")));
        AssertSentAtMostPerSecond(outputs, 10);
        AssertArrivedAtMostPerSecond(H.Fake.Etsy.CallTimes, 10);
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE lease_until IS NOT NULL"));
    }

    [Xunit.Fact]
    public async Task SecondProcessStartedWhileTheFirstsRequestsAreInFlight_LeavesThemAlone()
    {
        await EndIdleTransactionsAfterOneSecondAsync();
        var users = await Chains.DueUsersAsync(H, 40);
        SlowPlatforms();

        using var first = CliProcess.Start(["once"], H.Settings);
        await WaitUntilAsync(() => H.Fake.Concurrent("etsy") >= 3);
        // Longer than the database lets a transaction sit idle: a lock held across these calls would be gone by now.
        await Task.Delay(TimeSpan.FromSeconds(1.2));
        using var second = CliProcess.Start(["once"], H.Settings);

        Assert.Equal(0, await first.WaitForExitAsync(TimeSpan.FromMinutes(2)));
        Assert.Equal(0, await second.WaitForExitAsync(TimeSpan.FromMinutes(2)));
        output.WriteLine(first.Stdout.Split('\n').LastOrDefault(l => l.Contains("completed", StringComparison.Ordinal)));
        output.WriteLine(second.Stdout.Split('\n').LastOrDefault(l => l.Contains("completed", StringComparison.Ordinal)));

        Assert.Empty(H.Fake.Etsy.TokensUsedMoreThanOnce);
        Assert.Equal(users.Count, H.Fake.Etsy.TotalCalls);
        await Chains.AssertNoTokenLostAsync(H, users);
        Assert.All(users, u => Assert.NotNull(H.Fake.Etsy.IssuedFor(u.Refresh)));
    }

    [Xunit.Fact]
    public async Task ProcessKilledMidCall_ASecondStartedWhileItsRequestsAreStillInFlight_SendsNoTokenTwice()
    {
        await EndIdleTransactionsAfterOneSecondAsync();
        var users = await Chains.DueUsersAsync(H, 20);
        SlowPlatforms();

        using (var first = CliProcess.Start(["once"], H.Settings))
        {
            await WaitUntilAsync(() => H.Fake.Concurrent("etsy") >= 3);
            first.Signal(9);
            Assert.Equal(137, await first.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }

        // Etsy still works on what the killed process sent, and will rotate those tokens.
        var inFlightAtStart = H.Fake.Concurrent("etsy");
        Assert.True(inFlightAtStart > 0, "the killed process's requests were no longer in flight");
        var (code, stdout, _) = await CliProcess.RunAsync(["once"], H.Settings);
        await H.Fake.WhenIdleAsync(TimeSpan.FromSeconds(30));
        output.WriteLine($"{inFlightAtStart} in flight when the second started; {stdout.Split('\n').LastOrDefault(l => l.Contains("completed", StringComparison.Ordinal))}");

        Assert.Equal(0, code);
        Assert.Empty(H.Fake.Etsy.TokensUsedMoreThanOnce);
        var lost = 0;
        var neverSent = 0;
        foreach (var (id, original) in users)
        {
            var row = await H.Db.GetEtsyUserAsync(id);
            if (H.Fake.Etsy.IssuedFor(original) is null)
            {
                // Claimed by the killed process, which died before sending it: the row still holds it, under that lease.
                Assert.Equal(original, row.RefreshToken);
                neverSent++;
            }
            else if (row.RefreshToken == original)
            {
                lost++; // rotated for the killed process, after it died
            }
        }

        // Only the answers nobody was left to receive are lost (Etsy kills the old token at once). Their leases, and those
        // of tokens claimed but never sent, keep them from being sent again until they run out; then the first
        // invalid_grant is not believed.
        output.WriteLine($"lost rotations: {lost}; claimed but never sent: {neverSent}");
        Assert.InRange(lost, inFlightAtStart, 16);
        Assert.InRange(neverSent, 0, 16 - lost);
        Assert.Equal(lost + neverSent, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE lease_until > now()"));
    }

    [Xunit.Fact]
    public async Task Backlog_WithTheDefaultEtsyLimit_ShopifyFinishesWithinItsOwnBound_AndNoSessionIdlesInATransaction()
    {
        const int each = 3000;
        var latency = TimeSpan.FromMilliseconds(50);
        await H.Db.ExecuteAsync($"""
            INSERT INTO etsy_users (access_token, refresh_token, token_expires_at)
            SELECT 'old-access-token', i || '.rt-backlog-' || i, (now() AT TIME ZONE 'UTC') - interval '1 minute' + i * interval '1 millisecond'
            FROM generate_series(1, {each}) i;
            INSERT INTO shopify_stores (shop_domain, access_token) SELECT 'backlog' || i || '.myshopify.com', 'shpat_backlog_' || i FROM generate_series(1, {each}) i;
            ANALYZE;
            """);
        for (var i = 1; i <= each; i++)
        {
            H.Fake.Etsy.AddRefreshToken($"{i}.rt-backlog-{i}");
            H.Fake.Shopify.AddStore($"backlog{i}.myshopify.com", $"shpat_backlog_{i}");
        }

        H.Fake.Latency = latency;
        H.Settings["CYCLE_BUDGET_SECONDS"] = "30";

        CycleSummary summary;
        IReadOnlyList<FakeLogRecord> logs;
        await using (var watch = new IdleTransactionWatch(H.Db))
        {
            (summary, logs) = await H.RunCycleAsync();
            Assert.Equal(TimeSpan.Zero, watch.Longest);
        }

        var etsy = summary.Platforms.Single(p => p.Platform == "Etsy");
        var shopify = summary.Platforms.Single(p => p.Platform == "Shopify");
        // Shopify's own bound: its stores one after another in the 16 slots of REFRESH_MAX_CONCURRENCY (as shipped).
        var bound = latency * each / 16;
        output.WriteLine($"{summary}; Shopify {shopify.Duration.TotalSeconds:0.0} s (its bound {bound.TotalSeconds:0.0} s), Etsy {etsy.Duration.TotalSeconds:0.0} s; " +
            $"peak in flight: Etsy {H.Fake.PeakConcurrent("etsy")}, Shopify {H.Fake.PeakConcurrent("shopify")}, all {H.Fake.PeakConcurrent("all")}");

        Assert.Equal(each, shopify.Succeeded);
        // Within twice its bound on two busy cores; starved of slots by Etsy's permit waits, it took twenty times as long.
        Assert.True(shopify.Duration < bound * 2, $"Shopify took {shopify.Duration}, its bound is {bound}");
        // Etsy at 10 a second for 30 s, the rest left for the next cycle.
        Assert.InRange(etsy.Succeeded, 200, 301);
        Assert.Equal(each - etsy.Succeeded, etsy.LeftOver);
        AssertSentAtMostPerSecond([string.Join("\n", logs.Select(l => l.Message))], 10);
        AssertArrivedAtMostPerSecond(H.Fake.Etsy.CallTimes, 10);
        Assert.InRange(H.Fake.PeakConcurrent("all"), 2, 16);
    }

    [Xunit.Fact]
    public async Task RetryAfter_PausesEveryReplica()
    {
        var users = await Chains.DueUsersAsync(H, 60);
        var limited = users[10].Refresh;
        H.Fake.Etsy.RetryAfterSeconds = 2;
        H.Fake.Etsy.SetFault(limited, FakeFault.RateLimited, times: 1);
        // Two processes starting at once on a busy machine: the harness's 2 s timeout would fail calls for the load alone.
        H.Settings["HTTP_TIMEOUT_SECONDS"] = "10";

        var clis = Enumerable.Range(0, 2).Select(_ => CliProcess.Start(["once"], H.Settings)).ToList();
        var codes = await Task.WhenAll(clis.Select(c => c.WaitForExitAsync(TimeSpan.FromMinutes(2))));
        var outputs = clis.Select(c => c.Stdout).ToList();
        clis.ForEach(c => c.Dispose());

        // The process that got the 429 reports that account as failed (exit 1); the other exits 0.
        Assert.True(codes.Order().SequenceEqual([0, 1]), $"exit codes {string.Join(", ", codes)}; the processes' failures and cycles:\n" + string.Join("\n",
            outputs.SelectMany(o => o.Split('\n')).Where(l => l.Contains("ERROR", StringComparison.Ordinal) || l.Contains("WARN", StringComparison.Ordinal) || l.Contains("cycle completed", StringComparison.Ordinal))));
        Assert.Single(outputs, o => o.Contains("failed (rate_limited, transient)", StringComparison.Ordinal));
        // When each call left, by the processes' DEBUG lines (the fake, in this busy process, may stamp calls a second
        // late), from when the pause was written: the database's clock, on this machine as the processes' are.
        var pausedAt = (await H.Db.ScalarAsync<DateTime>("SELECT paused_until FROM token_refresh_rate WHERE platform = 'etsy'")).TimeOfDay - TimeSpan.FromSeconds(2);
        var matches = outputs.SelectMany(o => SentAt().Matches(o)).ToList();
        var refused = After(pausedAt, SentTime(Assert.Single(matches, m => m.Value.Contains(users[10].Id.ToString(), StringComparison.Ordinal))));
        var times = matches.Select(m => After(pausedAt, SentTime(m))).Order().ToList();
        output.WriteLine($"refused call sent at {refused.TotalSeconds:0.000}: " + string.Join(", ", times.Select(t => $"{t.TotalSeconds:0.00}")));
        Assert.True(refused <= TimeSpan.Zero, "the pause was written before the refused call was sent");
        // A call whose moment was reserved before the pause was written may still leave (moments are reserved at most
        // SharedRateLimit.Lookahead ahead, and used within the permit's grace); after that, none until the 2 s have passed.
        var reservedBefore = SharedRateLimit.Lookahead + Permit.Grace + TimeSpan.FromMilliseconds(100);
        Assert.DoesNotContain(times, t => t > reservedBefore && t < TimeSpan.FromSeconds(1.95));
        Assert.Contains(times, t => t >= TimeSpan.FromSeconds(1.95));
        Assert.Equal(users.Count - 1, users.Count(u => H.Fake.Etsy.IssuedFor(u.Refresh) is not null));
    }

    [Xunit.Fact]
    public async Task PermitGoneStaleDuringAnotherReplicasPause_AStopEndsTheWait_TheLeaseIsLetGo_NothingSent()
    {
        var users = await Chains.DueUsersAsync(H, 1);
        using var host = H.BuildHost();
        var etsy = await host.Services.GetServices<IPlatform>().Single(p => p.Info.Id == "etsy").StartCycleAsync(CancellationToken.None);
        Assert.NotNull(etsy);
        Assert.Equal(1, await etsy.CountDueAsync(CancellationToken.None));
        var deadline = DateTimeOffset.UtcNow.AddMinutes(5);
        var claimed = Assert.Single(await etsy.NextAsync(1, deadline, CancellationToken.None));
        // A 60 s Retry-After, and this account's permit a second old when its claim came back: it must wait for a new one.
        await host.Services.GetRequiredKeyedService<SharedRateLimit>("etsy").PauseAsync(TimeSpan.FromSeconds(60));
        var time = host.Services.GetRequiredService<TimeProvider>();
        using var stop = new CancellationTokenSource();
        var processing = etsy.ProcessAsync(claimed with { PermittedAt = time.GetTimestamp() - time.TimestampFrequency }, deadline, stop.Token);

        await stop.CancelAsync();
        var finished = await Task.WhenAny(processing, Task.Delay(TimeSpan.FromSeconds(10)));

        Assert.Same(processing, finished);
        Assert.Equal(AccountResult.Skip("stopped before it was sent"), await processing);
        Assert.Equal(0, H.Fake.Etsy.CallsFor(users[0].Refresh));
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE lease_until IS NOT NULL"));
        await Chains.AssertNoTokenLostAsync(H, users);
    }

    [Xunit.Fact]
    public async Task ShopifyMaxConcurrency_BoundsShopifyAlone()
    {
        for (var i = 0; i < 12; i++)
        {
            H.Fake.Shopify.AddStore($"store{i}.myshopify.com", $"shpat_{i}");
            await H.Db.AddShopifyStoreAsync($"store{i}.myshopify.com", $"shpat_{i}");
        }

        await Chains.DueUsersAsync(H, 12);
        H.Fake.Latency = TimeSpan.FromMilliseconds(300);
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "8";
        H.Settings["SHOPIFY_MAX_CONCURRENCY"] = "2";
        H.Settings["ETSY_MAX_REQUESTS_PER_SECOND"] = "100";

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 12/12 refreshed, 0 failed; Shopify: 12/12 validated, 0 deactivated, 0 failed", summary.ToString());
        Assert.Equal(2, H.Fake.PeakConcurrent("shopify"));
        Assert.InRange(H.Fake.PeakConcurrent("etsy"), 3, 8);
    }

    [Xunit.Fact]
    public async Task DailyQuota_IsRecorded_ShownByStatus_InTheMetrics_AndWarnedOfAtMostHourly()
    {
        // 30 accounts, refreshed every 50 minutes (1-hour tokens, 10-minute margin): 864 requests a day, 86% of 1,000.
        var users = await Chains.DueUsersAsync(H, 30);
        H.Fake.Etsy.LimitPerDay = 1000;
        H.Settings["ETSY_MAX_REQUESTS_PER_SECOND"] = "100";

        var (first, firstLogs) = await H.RunCycleAsync();
        Assert.Equal(30, first.Platforms[0].Succeeded);
        Assert.DoesNotContain(firstLogs, l => l.Id.Id == 111); // nothing known of the quota before the first answers

        using (var host = H.BuildHost())
        {
            using var perDay = new MetricCollector<long>(host.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), TokenRefreshMetrics.MeterName, "tokenrefresh.quota.per_day");
            using var refreshes = new MetricCollector<double>(host.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), TokenRefreshMetrics.MeterName, "tokenrefresh.quota.refreshes_per_day");
            await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
            Assert.Equal(1000, perDay.LastMeasurement!.Value);
            Assert.Equal(864, refreshes.LastMeasurement!.Value, precision: 6);
            var warning = Assert.Single(host.Services.GetFakeLogCollector().GetSnapshot(), l => l.Id.Id == 111);
            Assert.Equal(LogLevel.Warning, warning.Level);
            Assert.Contains("refreshing 30 accounts takes about 864 requests a day, 86% of the daily quota of 1000", warning.Message, StringComparison.Ordinal);
        }

        var (_, thirdLogs) = await H.RunCycleAsync();
        Assert.DoesNotContain(thirdLogs, l => l.Id.Id == 111); // said once an hour, whichever replica says it

        var (code, json, _) = await CliProcess.RunAsync(["status", "--json"], H.Settings);
        Assert.Equal(0, code);
        using var status = System.Text.Json.JsonDocument.Parse(json);
        var quota = status.RootElement.GetProperty("platforms")[0].GetProperty("quota");
        Assert.Equal(1000, quota.GetProperty("perDay").GetInt32());
        Assert.Equal(1000 - users.Count, quota.GetProperty("remaining").GetInt32());
        Assert.Equal(30, quota.GetProperty("accounts").GetInt64());
        Assert.Equal(86.4, quota.GetProperty("sharePercent").GetDouble());
        var (_, table, _) = await CliProcess.RunAsync(["status"], H.Settings);
        Assert.Contains("Etsy daily quota: 1,000 requests a day, 970 left", table, StringComparison.Ordinal);
        Assert.Contains("Refreshing 30 accounts takes about 864 requests a day, 86.4% of it: more than the 50%", table, StringComparison.Ordinal);
    }

    [Xunit.Fact]
    public async Task PastTheDailyQuota_SoonestExpiringFirst_ThenNoCallsUntilItFrees_StatusSaysWhatExpiresAndFromWhen()
    {
        // 40 due users in a shuffled order of expiry, a quota of 15 enforced as Etsy does, the default rate limit.
        var start = DateTimeOffset.UtcNow;
        var users = new List<(string Refresh, DateTimeOffset Expiry)>();
        for (var i = 0; i < 40; i++)
        {
            var refresh = H.Fake.Etsy.AddAccount(4000 + i);
            var expiry = start.AddMinutes(2).AddSeconds(5 * (i * 17 % 40));
            await H.Db.AddEtsyUserAsync(refresh, expiry);
            users.Add((refresh, expiry));
        }

        H.Fake.Etsy.LimitPerDay = 15;
        H.Fake.Etsy.Quota.Enforced = true;

        var (first, _) = await H.RunCycleAsync();
        var sent = H.Fake.Etsy.TotalCalls;
        await H.RunCycleAsync();
        var (code, json, _) = await CliProcess.RunAsync(["status", "--json"], H.Settings);
        var (_, table, _) = await CliProcess.RunAsync(["status"], H.Settings);

        // What the quota allowed went to the 15 tokens that expire soonest.
        var soonest = users.OrderBy(u => u.Expiry).ToList();
        Assert.Equal(15, first.Platforms[0].Succeeded);
        Assert.All(soonest.Take(15), u => Assert.Equal(1, H.Fake.Etsy.CallsFor(u.Refresh)));
        Assert.All(soonest.Skip(15), u => Assert.Equal(0, H.Fake.Etsy.CallsFor(u.Refresh)));
        // The refusal paused every call until the quota frees (its retry-after): no storm of 429s, none sent the next cycle.
        Assert.InRange(H.Fake.Etsy.Quota.Refusals, 1, 3);
        Assert.Equal(sent, H.Fake.Etsy.TotalCalls);
        Assert.Equal(0, code);
        using var status = System.Text.Json.JsonDocument.Parse(json);
        var quota = status.RootElement.GetProperty("platforms")[0].GetProperty("quota");
        Assert.Equal(0, quota.GetProperty("remaining").GetInt32());
        Assert.Equal(40, quota.GetProperty("expiringForWantOfQuota").GetInt64());
        Assert.Equal(soonest[15].Expiry, quota.GetProperty("expiringFrom").GetDateTimeOffset(), TimeSpan.FromMilliseconds(1));
        Assert.Contains("the tokens of the other 40 expire for want of quota, the soonest-expiring refreshed first; the first at", table, StringComparison.Ordinal);
    }

    // A process whose clock is seconds off the database's still sends its calls a tenth of a second apart, as they
    // arrive at the fake: its moments are placed by the database's clock as the process reads it, not by its own.
    // Taken as its own, a clock 3 s ahead would find every moment past and send them all at once; 3 s behind, it would
    // wait 3 s for the first.
    [Xunit.Theory]
    [InlineData(3.0)]
    [InlineData(-3.0)]
    public async Task SharedRateLimit_ProcessClockSecondsOffTheDatabases_CallsStillArriveATenthOfASecondApart(double skewSeconds)
    {
        var users = await Chains.DueUsersAsync(H, 12);
        H.BeforeWiring = services => services.AddSingleton<TimeProvider>(new SkewedTime(TimeSpan.FromSeconds(skewSeconds)));

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(users.Count, summary.Platforms[0].Succeeded);
        var first = H.Fake.Etsy.CallTimes.Min();
        var arrivals = H.Fake.Etsy.CallTimes.Select(t => t - first).Order().ToList();
        output.WriteLine($"cycle {summary.Duration.TotalSeconds:0.00} s; arrivals at {string.Join(", ", arrivals.Select(a => $"{a.TotalMilliseconds:0}"))} ms");
        // ETSY_MAX_REQUESTS_PER_SECOND as shipped (10): the 12th call a second after the 2nd, less 50 ms for a moment used
        // late (the first may arrive late, beside the second: its connection is made first); and no 3 s wait in the cycle.
        Assert.True(arrivals[11] - arrivals[1] >= TimeSpan.FromSeconds(0.95), $"the 2nd to the 12th call arrived within {(arrivals[11] - arrivals[1]).TotalMilliseconds:0} ms");
        Assert.True(summary.Duration < TimeSpan.FromSeconds(3), $"the cycle took {summary.Duration.TotalSeconds:0.00} s");
    }

    private sealed class SkewedTime(TimeSpan skew) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + skew;
    }

    private static Task WaitUntilAsync(Func<bool> condition) => Poll.UntilAsync(condition, TimeSpan.FromSeconds(60), everyMs: 5);
}

/// <summary>The lease contract for the main application's own on-demand refresh, run exactly as docs/database.md gives it.</summary>
public sealed class MainApplicationLeaseContractTests : HarnessTests
{
    // The SQL block of the lease contract in docs/database.md, statement by statement (the test runs what the docs say).
    private static string[] ContractStatements()
    {
        var readme = File.ReadAllText(Path.Combine(Repo.Root, "docs", "database.md"));
        var at = readme.IndexOf("**Lease contract.**", StringComparison.Ordinal);
        var start = readme.IndexOf("```sql", at, StringComparison.Ordinal) + "```sql".Length;
        var block = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)];
        var code = string.Join("\n", block.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("--", StringComparison.Ordinal)));
        return code.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    private async Task<List<object?>> RunAsync(string sql, params object[] values)
    {
        await using var connection = await H.Db.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(sql, connection);
        foreach (var value in values)
        {
            command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = value });
        }

        var rows = new List<object?>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add(reader.GetValue(0));
        }

        return rows;
    }

    [Fact]
    public async Task OnDemandRefreshUnderTheDocumentedLease_TheServiceLeavesItsTokenAlone_ThenRefreshesTheNewOne()
    {
        var statements = ContractStatements();
        Assert.Equal(3, statements.Length);
        var (lease, store, end) = (statements[0], statements[1], statements[2]);
        var old = H.Fake.Etsy.AddAccount(7);
        var user = await H.Db.AddEtsyUserAsync(old, DateTimeOffset.UtcNow.AddMinutes(-1));
        var holder = $"main-app/{Guid.NewGuid()}";

        // 1. The main application takes the lease, and gets the token to send; a second taker gets nothing.
        Assert.Equal([old], await RunAsync(lease, user, holder));
        Assert.Empty(await RunAsync(lease, user, $"main-app/{Guid.NewGuid()}"));

        // The service's cycle leaves that account alone while the lease is in force: counted as due, not claimed.
        var (during, logs) = await H.RunCycleAsync();
        Assert.Contains(logs, l => l.Message == "Etsy: found 1 accounts due");
        Assert.Equal("Etsy: 0/0 refreshed, 0 failed", during.Platforms[0].ToString());
        Assert.Equal(0, H.Fake.Etsy.CallsFor(old));

        // 2-3. Etsy rotated the token for the main application, which stores the pair over the token it sent and ends the lease.
        var rotated = $"{7}.rt-main-app";
        H.Fake.Etsy.AddRefreshToken(rotated);
        H.Fake.Etsy.Revoke(old);
        await RunAsync(store, user, holder, "main-app-access", rotated, DateTimeOffset.UtcNow.AddMinutes(-1), old);
        await RunAsync(end, user, holder);
        Assert.Equal(0L, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE lease_until IS NOT NULL"));

        // The service refreshes the new token next (it is due again here), once.
        var (after, _) = await H.RunCycleAsync();
        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", after.Platforms[0].ToString());
        Assert.Equal(1, H.Fake.Etsy.CallsFor(rotated));
        Assert.Equal(H.Fake.Etsy.IssuedFor(rotated)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(user)).RefreshToken);
        Assert.Equal(0, H.Fake.Etsy.CallsFor(old));
    }

    [Fact]
    public async Task TheDocumentedLease_IsRefusedRightAfterTheServicesAnswerWasLost()
    {
        var lease = ContractStatements()[0];
        var token = H.Fake.Etsy.AddAccount(8);
        var user = await H.Db.AddEtsyUserAsync(token, DateTimeOffset.UtcNow.AddMinutes(-1));
        // The service's request with this token timed out a moment ago: Etsy may have rotated it unseen.
        await H.Db.ExecuteAsync(
            "INSERT INTO token_refresh_state (platform, account_id, token_hash, unknown_outcome_at) VALUES ('etsy', @id, @hash, now())",
            new { id = user.ToString(), hash = Persistence.AccountState.Hash(token) });

        Assert.Empty(await RunAsync(lease, user, $"main-app/{Guid.NewGuid()}"));

        // A minute later it may be sent again.
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET unknown_outcome_at = now() - interval '61 seconds'");
        Assert.Equal([token], await RunAsync(lease, user, $"main-app/{Guid.NewGuid()}"));
    }
}
