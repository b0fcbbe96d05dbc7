using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>The main application hears about users who must reconnect: the view, NOTIFY, and the signed webhook (docs/reauth.md).</summary>
public sealed class ReauthSignalsTests : HarnessTests
{
    private const string Secret = "a-webhook-secret-of-32-characters";

    /// <summary>One Etsy user whose grant is revoked, one store whose token Shopify rejects, one fine user. The tokens, for the leak checks.</summary>
    private async Task<(Guid Revoked, Guid Store, List<string> Secrets)> ArrangeAsync()
    {
        var (fine, revoked, unknown) = await Chains.FineAndRevokedUsersAsync(H, 900);
        var token = $"shpat_{Guid.NewGuid():N}";
        H.Fake.Shopify.AddStore("bravo.myshopify.com", token);
        var store = await H.Db.AddShopifyStoreAsync("bravo.myshopify.com", token);
        H.Fake.Shopify.RevokeAccessToken("bravo.myshopify.com");
        return (revoked, store, [fine, unknown, token, H.Fake.Etsy.SharedSecret, H.Fake.Shopify.ApiSecret, H.Db.Password, Secret]);
    }

    [Fact]
    public async Task Notify_FlaggedUserAndSwitchedOffStore_AnnouncedAtCommit_AndTheDocumentedQueryFindsThem()
    {
        var (revoked, store, secrets) = await ArrangeAsync();
        var received = new ConcurrentQueue<string>();
        await using var listener = await H.Db.ListenReauthAsync(received.Enqueue);

        await H.RunCycleAsync();
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (received.Count < 2)
        {
            await listener.WaitAsync(wait.Token);
        }

        var events = received.Select(p => JsonDocument.Parse(p).RootElement).ToList();
        var flagged = Assert.Single(events, e => e.GetProperty("event").GetString() == "needs_reauth");
        Assert.Equal(("etsy", revoked.ToString(), "invalid_grant"),
            (flagged.GetProperty("platform").GetString(), flagged.GetProperty("account_id").GetString(), flagged.GetProperty("reason").GetString()));
        var off = Assert.Single(events, e => e.GetProperty("event").GetString() == "deactivated");
        Assert.Equal(("shopify", store.ToString(), "bravo.myshopify.com"),
            (off.GetProperty("platform").GetString(), off.GetProperty("account_id").GetString(), off.GetProperty("shop_domain").GetString()));
        AssertNoSecret(string.Join('\n', received), secrets);

        // The documented query, run as docs/reauth.md gives it.
        var docs = File.ReadAllText(Repo.File("docs/reauth.md"));
        var block = Regex.Match(docs, @"\*\*Who must reconnect\*\*.*?```sql\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        var statements = block.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(3, statements.Length);
        Assert.Equal([revoked.ToString()], await FirstColumnAsync(statements[0]));
        Assert.Equal([store.ToString()], await FirstColumnAsync(statements[1]));
        Assert.Empty(await FirstColumnAsync(statements[2]));

        // A user who reconnects (a new refresh token) is no longer asked for, even before the next cycle.
        await using (var reconnect = await H.Db.OpenAsync())
        {
            await using var update = new NpgsqlCommand("UPDATE etsy_users SET refresh_token = 'a-new-grant' WHERE user_id = $1", reconnect);
            update.Parameters.Add(new NpgsqlParameter { Value = revoked });
            await update.ExecuteNonQueryAsync();
        }

        Assert.Empty(await FirstColumnAsync(statements[0]));
    }

    [Fact]
    public async Task Notify_RolledBackFlag_SaysNothing()
    {
        var received = new ConcurrentQueue<string>();
        await using var listener = await H.Db.ListenReauthAsync(received.Enqueue);

        await using (var writer = await H.Db.OpenAsync())
        {
            await using var rolledBack = new NpgsqlCommand("""
                BEGIN;
                INSERT INTO token_refresh_state (platform, account_id, needs_reauth, last_error) VALUES ('etsy', 'rolled-back', true, 'invalid_grant');
                ROLLBACK;
                INSERT INTO token_refresh_state (platform, account_id, needs_reauth, last_error) VALUES ('etsy', 'committed', true, 'invalid_grant');
                """, writer);
            await rolledBack.ExecuteNonQueryAsync();
        }

        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await listener.WaitAsync(wait.Token);
        // Both statements ran before the wait; a notification of the rolled-back one would have come first.
        Assert.Equal("committed", JsonDocument.Parse(Assert.Single(received)).RootElement.GetProperty("account_id").GetString());
    }

    [Fact]
    public async Task Notify_TheTriggerSpeaksOnlyWhenTheFlagIsNew_OrForANewToken()
    {
        var received = new ConcurrentQueue<string>();
        await using var listener = await H.Db.ListenReauthAsync(payload => received.Enqueue(JsonDocument.Parse(payload).RootElement.GetProperty("reason").GetString()!));

        await using (var writer = await H.Db.OpenAsync())
        {
            await using var writes = new NpgsqlCommand("""
                INSERT INTO token_refresh_state (platform, account_id, needs_reauth, last_error, token_hash) VALUES ('etsy', 'a', true, 'flagged', 'h1');
                UPDATE token_refresh_state SET needs_reauth = true, last_error = 'saved again' WHERE account_id = 'a';
                UPDATE token_refresh_state SET token_hash = 'h1', last_error = 'same token' WHERE account_id = 'a';
                UPDATE token_refresh_state SET token_hash = 'h2', last_error = 'a new token, refused too' WHERE account_id = 'a';
                UPDATE token_refresh_state SET needs_reauth = false, last_error = 'cleared' WHERE account_id = 'a';
                INSERT INTO token_refresh_state (platform, account_id, needs_reauth, last_error) VALUES ('etsy', 'b', true, 'last');
                """, writer);
            await writes.ExecuteNonQueryAsync();
        }

        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!received.Contains("last"))
        {
            await listener.WaitAsync(wait.Token);
        }

        Assert.Equal(["flagged", "a new token, refused too", "last"], received);
    }

    [Fact]
    public async Task ExpiringStoreMustReconnect_NamedShopifyRefresh_InTheViewNotifyAndWebhook()
    {
        await H.Db.AddExpiringColumnsAsync();
        var (access, refresh) = H.Fake.Shopify.AddExpiringStore("expiring.myshopify.com");
        var now = DateTimeOffset.UtcNow;
        var id = await H.Db.AddExpiringStoreAsync("expiring.myshopify.com", access, refresh, now.AddMinutes(2), now.AddDays(80));
        H.Fake.Shopify.RevokeRefreshToken("expiring.myshopify.com");
        var received = new ConcurrentQueue<string>();
        await using var listener = await H.Db.ListenReauthAsync(received.Enqueue);

        await using var receiver = await WebhookReceiver.StartAsync(failFirst: 0);
        H.Settings["REAUTH_WEBHOOK_URL"] = receiver.Url;
        H.Settings["REAUTH_WEBHOOK_SECRET"] = Secret;
        await H.RunCycleAsync();
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (received.IsEmpty)
        {
            await listener.WaitAsync(wait.Token);
        }

        var notified = JsonDocument.Parse(Assert.Single(received)).RootElement;
        var posted = Assert.Single(JsonDocument.Parse(Assert.Single(receiver.Attempts).Body).RootElement.GetProperty("events").EnumerateArray());
        Assert.Equal(("shopify_refresh", id.ToString()), (notified.GetProperty("platform").GetString(), notified.GetProperty("account_id").GetString()));
        Assert.Equal(("needs_reauth", "shopify_refresh", id.ToString(), "expiring.myshopify.com"), (posted.GetProperty("event").GetString(),
            posted.GetProperty("platform").GetString(), posted.GetProperty("account_id").GetString(), posted.GetProperty("shop_domain").GetString()));
        Assert.Equal(["shopify_refresh"], await FirstColumnAsync($"SELECT platform FROM token_refresh_needs_reauth WHERE account_id = '{id}'"));
    }

    [Fact]
    public async Task NonExpiringTokenRefused_InTheViewNotifyAndWebhook_AnnouncedOnce_StaysActive_ClearedByTheMigration()
    {
        await H.Db.AddExpiringColumnsAsync();
        var token = $"shpat_{Guid.NewGuid():N}";
        H.Fake.Shopify.AddStore("charlie.myshopify.com", token);
        var store = await H.Db.AddShopifyStoreAsync("charlie.myshopify.com", token);
        H.Fake.Shopify.NonExpiringCutoff = DateTimeOffset.UtcNow.AddDays(-1);
        var received = new ConcurrentQueue<string>();
        await using var listener = await H.Db.ListenReauthAsync(received.Enqueue);
        await using var receiver = await WebhookReceiver.StartAsync(failFirst: 0);
        H.Settings["REAUTH_WEBHOOK_URL"] = receiver.Url;
        H.Settings["REAUTH_WEBHOOK_SECRET"] = Secret;
        var query = Regex.Match(File.ReadAllText(Repo.File("docs/reauth.md")), @"\*\*Who must reconnect\*\*.*?```sql\n(.*?)```", RegexOptions.Singleline)
            .Groups[1].Value.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[2];

        var (first, _) = await H.RunCycleAsync();
        var documented = await FirstColumnAsync(query);
        // Its backoff over, it is tried again: refused again, still flagged, and not announced a second time.
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = now(), next_check_at = now() WHERE platform = 'shopify'");
        var (second, _) = await H.RunCycleAsync();
        await H.Db.ExecuteAsync("SELECT pg_notify('tokenrefresh_reauth', '{\"event\":\"sentinel\"}')");
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!received.Any(p => p.Contains("sentinel", StringComparison.Ordinal)))
        {
            await listener.WaitAsync(wait.Token);
        }

        var migrate = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "charlie.myshopify.com", "--yes"], H.Settings);

        Assert.Equal((1, 1), (first.Platforms[1].Failed, second.Platforms[1].Failed));
        Assert.Equal(2, H.Fake.Shopify.GraphQlCallsFor("charlie.myshopify.com"));
        Assert.True((await H.Db.GetShopifyStoreAsync(store)).IsActive);
        var notified = JsonDocument.Parse(Assert.Single(received, p => !p.Contains("sentinel", StringComparison.Ordinal))).RootElement;
        Assert.Equal(("needs_reauth", "shopify", store.ToString(), "non_expiring_token_refused"), (notified.GetProperty("event").GetString(),
            notified.GetProperty("platform").GetString(), notified.GetProperty("account_id").GetString(), notified.GetProperty("reason").GetString()));
        var posted = Assert.Single(JsonDocument.Parse(Assert.Single(receiver.Attempts).Body).RootElement.GetProperty("events").EnumerateArray());
        Assert.Equal(("needs_reauth", "shopify", "charlie.myshopify.com", "non_expiring_token_refused"), (posted.GetProperty("event").GetString(),
            posted.GetProperty("platform").GetString(), posted.GetProperty("shop_domain").GetString(), posted.GetProperty("reason").GetString()));
        Assert.Equal([store.ToString()], documented);
        Assert.True(migrate.ExitCode == 0, migrate.Stdout + migrate.Stderr);
        Assert.Empty(await FirstColumnAsync(query));
        Assert.Empty(await FirstColumnAsync("SELECT account_id FROM token_refresh_needs_reauth"));
    }

    [Fact]
    public async Task Webhook_FailsTwiceThenAccepts_RetriedWithBackoff_SameId_VerifiedByAStandardWebhooksLibrary_NoToken()
    {
        var (revoked, store, secrets) = await ArrangeAsync();
        await using var receiver = await WebhookReceiver.StartAsync(failFirst: 2);
        H.Settings["REAUTH_WEBHOOK_URL"] = receiver.Url + "hooks/reauth?key=in-the-url";
        H.Settings["REAUTH_WEBHOOK_SECRET"] = Secret;

        var (_, logs) = await H.RunCycleAsync();

        var attempts = receiver.Attempts.ToList();
        Assert.Equal(3, attempts.Count);
        Assert.Single(attempts.Select(a => a.Id).Distinct());
        Assert.True(attempts[1].At - attempts[0].At >= TimeSpan.FromSeconds(0.9), $"first wait {attempts[1].At - attempts[0].At}");
        Assert.True(attempts[2].At - attempts[1].At >= TimeSpan.FromSeconds(1.9), $"second wait {attempts[2].At - attempts[1].At}");
        // Standard Webhooks' scheme, pinned to a vector computed apart from .NET:
        // printf '%s' 'msg_1.1767225600.{"events":[]}' | openssl dgst -sha256 -hmac "$Secret" -binary | base64
        Assert.Equal("v1,+eAEif2+YxbtjKRNty3TlgFYNbmFsqeM86QVg9Mn4l8=", ReauthWebhook.Sign(System.Text.Encoding.UTF8.GetBytes(Secret), "msg_1", "1767225600", """{"events":[]}"""u8));
        // A receiver verifies with a library that is not ours, given the secret as Standard Webhooks spell it.
        var verifier = new StandardWebhooks.StandardWebhook(LibrarySecret);
        foreach (var attempt in attempts)
        {
            verifier.Verify(System.Text.Encoding.UTF8.GetString(attempt.Body), attempt.WebhookHeaders());
            Assert.Equal("/hooks/reauth?key=in-the-url", attempt.PathAndQuery);
        }

        // A body changed on the way is refused by the same library.
        Assert.ThrowsAny<Exception>(() => verifier.Verify(System.Text.Encoding.UTF8.GetString(attempts[^1].Body).Replace("deactivated", "needs_reauth", StringComparison.Ordinal), attempts[^1].WebhookHeaders()));

        var events = JsonDocument.Parse(attempts[^1].Body).RootElement.GetProperty("events").EnumerateArray().ToList();
        Assert.Equal(2, events.Count);
        Assert.Contains(events, e => e.GetProperty("event").GetString() == "needs_reauth" && e.GetProperty("account_id").GetString() == revoked.ToString());
        Assert.Contains(events, e => e.GetProperty("event").GetString() == "deactivated" && e.GetProperty("shop_domain").GetString() == "bravo.myshopify.com"
            && e.GetProperty("account_id").GetString() == store.ToString());
        AssertNoSecret(string.Join('\n', attempts.Select(a => System.Text.Encoding.UTF8.GetString(a.Body) + a.Headers)), secrets.Where(s => s != Secret));
        Assert.Equal(2, logs.Count(l => l.Id.Name == "Retrying"));
        Assert.Contains(logs, l => l.Id.Name == "Delivered" && l.Message.Contains("(attempt 3)", StringComparison.Ordinal));
        // The URL's own key is never logged, nor the secret.
        AssertNoSecret(string.Join('\n', logs.Select(l => l.Message)), ["in-the-url", Secret]);
    }

    [Fact]
    public async Task Webhook_429WithRetryAfter_WaitsAsTold_WithAWhsecSecret()
    {
        await ArrangeAsync();
        await using var receiver = await WebhookReceiver.StartAsync(failFirst: 1, failWith: 429, retryAfterSeconds: 3);
        H.Settings["REAUTH_WEBHOOK_URL"] = receiver.Url;
        H.Settings["REAUTH_WEBHOOK_SECRET"] = LibrarySecret;

        var (_, logs) = await H.RunCycleAsync();

        var attempts = receiver.Attempts.ToList();
        Assert.Equal(2, attempts.Count);
        // Retry-After: 3, not the first backoff's 1 s.
        Assert.True(attempts[1].At - attempts[0].At >= TimeSpan.FromSeconds(2.9), $"wait {attempts[1].At - attempts[0].At}");
        Assert.Contains(logs, l => l.Id.Name == "Retrying" && l.Message.Contains("(HTTP 429); trying again in 3 s", StringComparison.Ordinal));
        var verifier = new StandardWebhooks.StandardWebhook(LibrarySecret);
        verifier.Verify(System.Text.Encoding.UTF8.GetString(attempts[1].Body), attempts[1].WebhookHeaders());
    }

    [Fact]
    public async Task Webhook_ReceiverRefuses_NotRetried_AndTheCycleStillEnds()
    {
        await ArrangeAsync();
        await using var receiver = await WebhookReceiver.StartAsync(failFirst: 0, refuse: true);
        H.Settings["REAUTH_WEBHOOK_URL"] = receiver.Url;
        H.Settings["REAUTH_WEBHOOK_SECRET"] = Secret;

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Single(receiver.Attempts);
        Assert.Contains(logs, l => l.Id.Name == "NotDelivered" && l.Level == LogLevel.Error && l.Message.Contains("HTTP 401", StringComparison.Ordinal));
        Assert.Equal(1, summary.Platforms.Single(p => p.Platform == "Shopify").Deactivated);
    }

    private async Task<List<string>> FirstColumnAsync(string sql)
    {
        await using var connection = await H.Db.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var values = new List<string>();
        while (await reader.ReadAsync())
        {
            values.Add(reader.GetValue(0).ToString()!);
        }

        return values;
    }

    private static void AssertNoSecret(string text, IEnumerable<string> secrets)
    {
        foreach (var secret in secrets)
        {
            Assert.False(text.Contains(secret, StringComparison.Ordinal), $"a secret of length {secret.Length} was sent or logged");
        }
    }

    // The same secret as a Standard Webhooks library takes it: whsec_ and the base64 of its bytes.
    private static readonly string LibrarySecret = "whsec_" + Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(Secret));
}
