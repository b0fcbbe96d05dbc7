using System.Text.RegularExpressions;
using Dapper;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// `tokenrefresh shopify migrate-expiring --all --yes` over many stores, as an operator runs it before the cut-off: side by
/// side within SHOPIFY_MAX_CONCURRENCY, with lost answers and uninstalled stores, stopped by Ctrl+C or killed, and resumed.
/// </summary>
public sealed class MigrateExpiringAllTests : HarnessTests
{
    private const int Concurrency = 4;

    private static readonly string[] All = ["shopify", "migrate-expiring", "--all", "--yes"];

    /// <summary>Non-expiring stores m1..mN in the fake and the table; <paramref name="arrange"/> may give one a fault or uninstall it.</summary>
    private async Task<List<(Guid Id, string Shop, string Token)>> AddStoresAsync(int count, Action<int, string>? arrange = null)
    {
        await H.Db.AddExpiringColumnsAsync();
        H.Settings["SHOPIFY_MAX_CONCURRENCY"] = $"{Concurrency}";
        var shops = Enumerable.Range(1, count).Select(i => $"m{i}.myshopify.com").ToArray();
        var tokens = shops.Select(_ => $"shpat_{Guid.NewGuid():N}").ToArray();
        for (var i = 0; i < count; i++)
        {
            H.Fake.Shopify.AddStore(shops[i], tokens[i]);
            arrange?.Invoke(i + 1, shops[i]);
        }

        await using var c = await H.Db.OpenAsync();
        var ids = (await c.QueryAsync<(Guid Id, string Shop)>(
            "INSERT INTO shopify_stores (shop_domain, access_token) SELECT * FROM unnest(@shops, @tokens) RETURNING id, shop_domain", new { shops, tokens }))
            .ToDictionary(r => r.Shop, r => r.Id);
        return [.. shops.Select((s, i) => (ids[s], s, tokens[i]))];
    }

    private Task<long> CountAsync(string where) => H.Db.ScalarAsync<long>($"SELECT count(*) FROM shopify_stores st WHERE {where}");

    // Every store holds what Shopify knows now: no pair was received and dropped.
    private async Task AssertTableMatchesShopifyAsync(IEnumerable<(Guid Id, string Shop, string Token)> stores)
    {
        foreach (var (id, shop, _) in stores)
        {
            Assert.Equal(H.Fake.Shopify.CurrentAccessToken(shop), (await H.Db.GetExpiringStoreAsync(id)).AccessToken);
        }
    }

    private Task WaitForExchangesAsync(CliProcess cli, int count) => Poll.UntilAsync(() =>
    {
        var calls = H.Fake.Shopify.TotalCalls;
        Assert.False(calls < count && cli.HasExited, cli.Stdout + cli.Stderr);
        return calls >= count;
    }, TimeSpan.FromMinutes(1));

    [Fact]
    public async Task All_ManyStores_SideBySideWithinTheBound_LostAnswersRepeated_UninstalledNamedWithWhatToDo()
    {
        // Per hundred stores: one answer lost once (the run's own repeat completes it), one lost twice, one uninstalled.
        var stores = await AddStoresAsync(400, (i, shop) =>
        {
            switch (i % 100)
            {
                case 1: H.Fake.Shopify.SetFault(shop, FakeFault.RotateThenReset, times: 1); break;
                case 2: H.Fake.Shopify.SetFault(shop, FakeFault.RotateThenReset, times: 2); break;
                case 3: H.Fake.Shopify.Uninstall(shop); break;
            }
        });
        H.Fake.Latency = TimeSpan.FromMilliseconds(60);

        var first = await CliProcess.RunAsync(All, H.Settings);
        H.Fake.Latency = TimeSpan.Zero;
        var again = await CliProcess.RunAsync(All, H.Settings);

        Assert.True(first.ExitCode == 1, first.Stdout + first.Stderr);
        var lines = first.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // A progress line every 5 s (400 stores, 4 at a time, 60 ms each: about 6 s).
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^\d+ of 400 stores done in \d+ s: migrated \d+, already migrated 0, uninstalled \d+"));
        Assert.Contains("trying 8 store(s) once more: lost answers are repeated", first.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"Done in \d+\.\d s: 400 store\(s\) to migrate: migrated 392, already migrated 0, uninstalled 4, refused 0, unanswered 4\.", first.Stdout);
        Assert.Equal(4, lines.Count(l => l.StartsWith("uninstalled m", StringComparison.Ordinal) && l.EndsWith("the merchant must install the app again (the service deactivates the store at its next validation)", StringComparison.Ordinal)));
        Assert.Equal(4, lines.Count(l => l.StartsWith("unanswered m", StringComparison.Ordinal) && l.Contains("run the migration again within 7 days", StringComparison.Ordinal)));
        Assert.DoesNotContain(lines, l => l.StartsWith("migrated ", StringComparison.Ordinal));
        Assert.InRange(H.Fake.PeakConcurrent("shopify"), 2, Concurrency);
        // Each store sent once, but for the documented repeat of a lost answer: 400, then the 8 tried once more; the second
        // run sends the 4 unanswered (now answered) and the 4 uninstalled again.
        Assert.Empty(H.Fake.Shopify.ExchangedAgainAfterAnswer);
        Assert.Equal(416, H.Fake.Shopify.TotalCalls);
        Assert.True(again.ExitCode == 1, again.Stdout + again.Stderr);
        Assert.Contains("8 store(s) to migrate: migrated 4, already migrated 392, uninstalled 4, refused 0, unanswered 0.", again.Stdout, StringComparison.Ordinal);
        Assert.Equal(396, await CountAsync("st.refresh_token IS NOT NULL"));
        await AssertTableMatchesShopifyAsync(stores.Where((_, i) => (i + 1) % 100 != 3));
        Assert.DoesNotContain(stores[0].Token, first.Stdout + first.Stderr + again.Stdout + again.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task All_CtrlC_InFlightFinishAndAreStored_NothingLeftClaimed_TheNextRunSendsNoStoreAgain()
    {
        var stores = await AddStoresAsync(300);
        H.Fake.Latency = TimeSpan.FromMilliseconds(50);

        using var cli = CliProcess.Start(All, H.Settings);
        await WaitForExchangesAsync(cli, 40);
        cli.Signal(2); // SIGINT, as Ctrl+C
        var stopped = await cli.WaitForExitAsync(TimeSpan.FromMinutes(1));
        var sent = H.Fake.Shopify.TotalCalls;
        var migrated = await CountAsync("st.refresh_token IS NOT NULL");
        var claimed = await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE lease_until IS NOT NULL OR platform = 'shopify_exchange'");
        H.Fake.Latency = TimeSpan.Zero;
        var resumed = await CliProcess.RunAsync(All, H.Settings);

        Assert.True(stopped == 1, cli.Stdout + cli.Stderr);
        Assert.InRange(sent, 40, 299);
        // Every exchange that was sent finished and was stored; none was left claimed.
        Assert.Equal(sent, migrated);
        Assert.Equal(0, claimed);
        Assert.Contains($"300 store(s) to migrate: migrated {sent}, already migrated 0, uninstalled 0, refused 0, unanswered 0, not started {300 - sent}.", cli.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"Stopped after \d+\.\d s: 300 store\(s\) to migrate", cli.Stdout);
        Assert.Contains($"Run the command again for the {300 - sent} store(s) not started; the stores done are not sent again.", cli.Stdout, StringComparison.Ordinal);
        Assert.True(resumed.ExitCode == 0, resumed.Stdout + resumed.Stderr);
        Assert.Contains($"{300 - sent} store(s) to migrate: migrated {300 - sent}, already migrated {sent}, uninstalled 0, refused 0, unanswered 0.", resumed.Stdout, StringComparison.Ordinal);
        Assert.Equal(300, H.Fake.Shopify.TotalCalls);
        Assert.Empty(H.Fake.Shopify.ExchangedAgainAfterAnswer);
        await AssertTableMatchesShopifyAsync(stores);
    }

    [Fact]
    public async Task All_Killed_TheStoresInFlightWaitForTheirClaims_ThenOnlyThoseAreRepeated()
    {
        var stores = await AddStoresAsync(120);
        H.Fake.Latency = TimeSpan.FromMilliseconds(300);

        using var cli = CliProcess.Start(All, H.Settings);
        await WaitForExchangesAsync(cli, 12);
        cli.Signal(9); // SIGKILL: a crash, mid-call
        await cli.WaitForExitAsync(TimeSpan.FromMinutes(1));
        var inFlight = (await H.Db.QueryAsync<string>("SELECT account_id FROM token_refresh_state WHERE platform = 'shopify_exchange' AND lease_until > now()")).ToHashSet();
        H.Fake.Latency = TimeSpan.Zero;
        var whileClaimed = await CliProcess.RunAsync(All, H.Settings);
        // The claims of the process that died run out (LeaseLength, 3 minutes by default): here, at once.
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET lease_until = now() - interval '1 second' WHERE platform = 'shopify_exchange'");
        var afterwards = await CliProcess.RunAsync(All, H.Settings);

        Assert.InRange(inFlight.Count, 1, Concurrency);
        Assert.True(whileClaimed.ExitCode == 1, whileClaimed.Stdout + whileClaimed.Stderr);
        Assert.Contains($", in another process {inFlight.Count}.", whileClaimed.Stdout, StringComparison.Ordinal);
        Assert.Equal(inFlight.Count, Regex.Count(whileClaimed.Stdout, @"not exchanged m\d+\.myshopify\.com \(([0-9a-f-]+)\): being migrated by another process \(or by one that stopped mid-call: its claim ends at"));
        Assert.True(afterwards.ExitCode == 0, afterwards.Stdout + afterwards.Stderr);
        Assert.Contains($"{inFlight.Count} store(s) to migrate: migrated {inFlight.Count},", afterwards.Stdout, StringComparison.Ordinal);
        // Only a store whose exchange the crash may have cut off is sent again (Shopify answers it with the same pair).
        var tokens = stores.Where(s => inFlight.Contains(s.Id.ToString())).Select(s => s.Token).ToHashSet();
        Assert.Subset(tokens, H.Fake.Shopify.ExchangedAgainAfterAnswer.ToHashSet());
        await AssertTableMatchesShopifyAsync(stores);
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state"));
    }

    [Fact]
    public async Task All_CredentialsRefused_StopsAtOnce_OneLineNamingTheSettings_ExitTwo()
    {
        await AddStoresAsync(40);
        H.Settings["SHOPIFY_API_SECRET"] = "not-the-app-secret";

        var (code, stdout, stderr) = await CliProcess.RunAsync(All, H.Settings);

        Assert.Equal(2, code);
        Assert.Single(Regex.Matches(stderr, @"Shopify refused the app's credentials \(invalid_client\): check SHOPIFY_API_KEY and SHOPIFY_API_SECRET"));
        Assert.InRange(H.Fake.Shopify.TotalCalls, 1, 2 * Concurrency);
        Assert.Equal(0, await CountAsync("st.refresh_token IS NOT NULL"));
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state"));
        Assert.DoesNotContain("not-the-app-secret", stdout + stderr, StringComparison.Ordinal);
    }
}
