using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// Accounts the main application deletes: their state goes with the next cycle, a batch at a time, and an account
/// deleted while its call was in flight is never flagged or announced (docs/database.md, docs/reauth.md).
/// </summary>
public sealed class LeftoverStateTests : HarnessTests
{
    [Fact]
    public async Task DeletedAccounts_TheirStateGoesWithTheNextCycle_ALeasedRowWaitsForItsHolder_TheRestStays()
    {
        var users = await Chains.DueUsersAsync(H, 3);
        var stores = new List<Guid>();
        for (var i = 0; i < 2; i++)
        {
            H.Fake.Shopify.AddStore($"leftover{i}.myshopify.com", $"shpat_leftover_{i}");
            stores.Add(await H.Db.AddShopifyStoreAsync($"leftover{i}.myshopify.com", $"shpat_leftover_{i}"));
        }

        await H.RunCycleAsync();
        Assert.Equal(5, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state"));

        // users[1]'s row is under another process's lease (its call may still be answered); store 0 had a token exchange pending.
        var counted = await DeletedAsync();
        await H.Db.ExecuteAsync("""
            UPDATE token_refresh_state SET lease_until = now() + interval '5 minutes', lease_holder = 'another/1/x' WHERE account_id = @Leased::text;
            INSERT INTO token_refresh_state (platform, account_id, unknown_outcome_at) VALUES ('shopify_exchange', @Store::text, now());
            DELETE FROM etsy_users WHERE user_id IN (@Gone, @Leased);
            DELETE FROM shopify_stores WHERE id = @Store;
            """, new { Gone = users[0].Id, Leased = users[1].Id, Store = stores[0] });
        await CountedAsync(counted);

        var (_, logs) = await H.RunCycleAsync();

        var left = await H.Db.QueryAsync<(string Platform, string Id)>("SELECT platform, account_id FROM token_refresh_state");
        (string, string)[] kept = [("etsy", users[1].Id.ToString()), ("etsy", users[2].Id.ToString()), ("shopify", stores[1].ToString())];
        Assert.Equal(kept.Order(), left.Order());
        Assert.Contains(logs, l => l.Message == "Etsy: removed 1 state rows of accounts no longer in etsy_users");
        Assert.Contains(logs, l => l.Message == "Shopify: removed 2 state rows of accounts no longer in shopify_stores");
    }

    [Fact]
    public async Task WhileNoRowIsDeleted_APassThatLeftNoneIsNotRepeated_ADeletionBringsItBack()
    {
        var stores = new List<Guid>();
        for (var i = 0; i < 2; i++)
        {
            H.Fake.Shopify.AddStore($"kept{i}.myshopify.com", $"shpat_kept_{i}");
            stores.Add(await H.Db.AddShopifyStoreAsync($"kept{i}.myshopify.com", $"shpat_kept_{i}"));
        }

        using var host = H.BuildHost();
        var cycle = host.Services.GetRequiredService<RefreshCycle>;
        await cycle().RunAsync();

        // A state row with no store, though no store was deleted (PostgreSQL counted no deletion): the pass waits.
        var orphan = Guid.NewGuid().ToString();
        await H.Db.ExecuteAsync("INSERT INTO token_refresh_state (platform, account_id, last_success_at) VALUES ('shopify', @orphan, now())", new { orphan });
        await cycle().RunAsync();
        Assert.Equal(1L, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE account_id = @orphan", new { orphan }));

        // The main application deletes a store; once PostgreSQL counts it, the next cycle's search removes both rows.
        var counted = await DeletedAsync();
        await H.Db.ExecuteAsync("DELETE FROM shopify_stores WHERE id = @Store", new { Store = stores[0] });
        await CountedAsync(counted with { Users = -1 });
        await cycle().RunAsync();

        var left = await H.Db.QueryAsync<string>("SELECT account_id FROM token_refresh_state WHERE platform = 'shopify'");
        Assert.Equal([stores[1].ToString()], left);
        Assert.Contains(host.Services.GetFakeLogCollector().GetSnapshot(), l => l.Message == "Shopify: removed 2 state rows of accounts no longer in shopify_stores");
    }

    // PostgreSQL's counts of rows deleted from the two tables, by which a cycle knows to search for leftovers.
    private async Task<(long Users, long Stores)> DeletedAsync() => (await H.Db.QueryAsync<(long, long)>(
        "SELECT pg_stat_get_tuples_deleted('etsy_users'::regclass), pg_stat_get_tuples_deleted('shopify_stores'::regclass)"))[0];

    // Until the deletions since those counts show in them: a second or so after their commit, at most ten.
    private Task CountedAsync((long Users, long Stores) before) => Poll.UntilAsync(async () =>
        await DeletedAsync() is var now && now.Users > before.Users && now.Stores > before.Stores, TimeSpan.FromSeconds(30), everyMs: 100);

    [Fact]
    public async Task ALargeDeletion_IsRemovedABatchACycle()
    {
        await H.Db.ExecuteAsync("""
            INSERT INTO token_refresh_state (platform, account_id, last_success_at)
            SELECT 'etsy', gen_random_uuid()::text, now() FROM generate_series(1, 50003)
            """);

        var (_, logs) = await H.RunCycleAsync();
        Assert.Equal(3, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state"));
        Assert.Contains(logs, l => l.Message == "Etsy: removed 50000 state rows of accounts no longer in etsy_users; more are left for the next cycles");

        (_, logs) = await H.RunCycleAsync();
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state"));
        Assert.Contains(logs, l => l.Message == "Etsy: removed 3 state rows of accounts no longer in etsy_users");
    }

    [Fact]
    public async Task AnAccountDeletedWhileItsRefreshWasInFlight_ItsInvalidGrant_FlagsNothing_AnnouncesNothing()
    {
        var unknown = $"revoked-refresh-{Guid.NewGuid():N}";
        var user = await H.Db.AddEtsyUserAsync(unknown, DateTimeOffset.UtcNow.AddMinutes(2));
        var received = new ConcurrentQueue<string>();
        await using var listener = await H.Db.ListenReauthAsync(received.Enqueue);
        await using var receiver = await WebhookReceiver.StartAsync(failFirst: 0);
        H.Settings["REAUTH_WEBHOOK_URL"] = receiver.Url;
        H.Settings["REAUTH_WEBHOOK_SECRET"] = "a-webhook-secret-of-32-characters";
        // The main application deletes the user while Etsy is answering (the answer is invalid_grant: an unknown token).
        H.Fake.Etsy.OnRequest = async _ => await H.Db.ExecuteAsync("DELETE FROM etsy_users WHERE user_id = @user", new { user });

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(1, summary.Platforms.Single(p => p.Platform == "Etsy").Failed);
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state"));
        Assert.Empty(receiver.Attempts);
        // NOTIFY is delivered in commit order: once a marker sent after the cycle arrives, anything the cycle sent has too.
        await H.Db.ExecuteAsync("SELECT pg_notify('tokenrefresh_reauth', '{\"event\":\"marker\"}')");
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!received.Any(p => p.Contains("marker", StringComparison.Ordinal)))
        {
            await listener.WaitAsync(wait.Token);
        }

        Assert.Equal(["marker"], received.Select(p => JsonDocument.Parse(p).RootElement.GetProperty("event").GetString()));
    }
}
