using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// eBay, opt-in (EBAY_CLIENT_ID), at https://api.ebay.com through the production wiring: an access token refreshed over
/// a refresh token that does not rotate and is kept, the answers eBay gives, the lease across replicas, the refresh
/// token's end announced ahead, and a missing table that stops eBay alone.
/// </summary>
public sealed class EbayRefreshTests : HarnessTests
{
    private async Task<(Guid Id, string Refresh)> UserAsync(TimeSpan expiresIn, TimeSpan? endsIn = null)
    {
        var ends = DateTimeOffset.UtcNow + (endsIn ?? TimeSpan.FromDays(400));
        var refresh = H.Fake.Ebay.AddUser(ends);
        return (await H.Db.AddEbayUserAsync(refresh, DateTimeOffset.UtcNow + expiresIn, ends), refresh);
    }

    private async Task ArrangeAsync()
    {
        await H.Db.AddEbayTableAsync();
        H.UseEbay();
    }

    [Fact]
    public async Task Cycle_DueUser_NewAccessTokenStored_OverTheRefreshTokenSent_WhichIsKept_OtherPlatformsUntouched()
    {
        await ArrangeAsync();
        var (due, refresh) = await UserAsync(TimeSpan.FromMinutes(4));
        var (later, _) = await UserAsync(TimeSpan.FromMinutes(45));
        var before = await H.Db.GetEbayUserAsync(due);

        var (summary, _) = await H.RunCycleAsync();

        var row = await H.Db.GetEbayUserAsync(due);
        Assert.Equal("Etsy: 0/0 refreshed, 0 failed; Shopify: 0/0 validated, 0 deactivated, 0 failed; eBay: 1/1 refreshed, 0 failed", summary.ToString());
        Assert.True(H.Fake.Ebay.IsAccessTokenValid(row.AccessToken, DateTimeOffset.UtcNow));
        Assert.Equal(refresh, row.RefreshToken);
        Assert.Equal(before.RefreshExpiresAt, row.RefreshExpiresAt);
        Assert.InRange(row.ExpiresAt!.Value, DateTime.UtcNow.AddSeconds(7190), DateTime.UtcNow.AddSeconds(7205));
        Assert.Equal(0, H.Fake.Ebay.CallsFor((await H.Db.GetEbayUserAsync(later)).RefreshToken!));
        Assert.Equal((0, 0), (H.Fake.Etsy.TotalCalls, H.Fake.Shopify.TotalCalls));
        Assert.Contains("api.ebay.com:443", H.Network.Connections);
    }

    [Fact]
    public async Task Cycle_InvalidGrant_FlagsReauthorisation_InTheView_NotCalledAgain()
    {
        await ArrangeAsync();
        var (id, refresh) = await UserAsync(TimeSpan.FromMinutes(-5));
        H.Fake.Ebay.Revoke(refresh);

        var (first, logs) = await H.RunCycleAsync();
        await H.Db.ExecuteAsync("UPDATE token_refresh_state SET next_attempt_at = NULL");
        var (second, _) = await H.RunCycleAsync();

        Assert.Equal("eBay: 0/1 refreshed, 1 failed", first.Platforms[2].ToString());
        Assert.Contains(logs, l => l.Level == LogLevel.Error && l.Message.Contains("invalid_grant: needs re-authorisation", StringComparison.Ordinal));
        Assert.Equal(("ebay", "invalid_grant"), await H.Db.QueryAsync<(string, string)>(
            "SELECT platform, reason FROM token_refresh_needs_reauth WHERE account_id = @id", new { id = id.ToString() }) is [var r] ? r : default);
        Assert.Equal(0, second.Platforms[2].Found);
        Assert.Equal(1, H.Fake.Ebay.CallsFor(refresh));
    }

    [Fact]
    public async Task Cycle_InvalidClient_PausesEbayForTheCycle_WithOneLineNamingTheSettings_NoUserBacksOff()
    {
        await ArrangeAsync();
        H.Settings["EBAY_CLIENT_SECRET"] = "not-the-cert-id";
        for (var i = 0; i < 40; i++)
        {
            await UserAsync(TimeSpan.FromMinutes(2));
        }

        var (summary, logs) = await H.RunCycleAsync();

        var line = Assert.Single(logs, l => l.Id.Name == "CredentialsRefused");
        Assert.Equal("eBay: the platform refused the app's credentials (invalid_client): check EBAY_CLIENT_ID and EBAY_CLIENT_SECRET. No more eBay calls this cycle, and no account is marked as failing for it", line.Message);
        // Only the calls already in flight (REFRESH_MAX_CONCURRENCY, 16) when the first answer came; the rest wait for the next cycle.
        var ebay = summary.Platforms[2];
        Assert.True(H.Fake.Ebay.TotalCalls <= 16 && ebay.Failed == H.Fake.Ebay.TotalCalls && ebay.Failed + ebay.LeftOver == 40, $"{ebay}, {H.Fake.Ebay.TotalCalls} calls");
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE platform = 'ebay' AND (next_attempt_at IS NOT NULL OR last_error IS NOT NULL)"));
    }

    [Fact]
    public async Task Cycle_429WaitsForRetryAfter_A5xxIsTriedAgainNextCycle_ALostAnswerCostsNothing()
    {
        await ArrangeAsync();
        var (limited, limitedRefresh) = await UserAsync(TimeSpan.FromMinutes(3));
        var (failing, failingRefresh) = await UserAsync(TimeSpan.FromMinutes(3));
        var (lost, lostRefresh) = await UserAsync(TimeSpan.FromMinutes(3));
        H.Fake.Ebay.SetFault(limitedRefresh, FakeFault.RateLimited, times: 1);
        H.Fake.Ebay.SetFault(failingRefresh, FakeFault.ServerError, times: 1);
        H.Fake.Ebay.SetFault(lostRefresh, FakeFault.RotateThenReset, times: 1);

        var (first, _) = await H.RunCycleAsync();
        var limitedState = await H.Db.GetStateAsync("ebay", limited);
        var failingState = await H.Db.GetStateAsync("ebay", failing);
        var lostState = await H.Db.GetStateAsync("ebay", lost);
        var (second, _) = await H.RunCycleAsync();

        Assert.Equal("eBay: 0/3 refreshed, 3 failed", first.Platforms[2].ToString());
        Assert.Equal("rate_limited", limitedState!.LastError);
        Assert.InRange(limitedState.NextAttemptAt!.Value, DateTime.UtcNow.AddSeconds(1), DateTime.UtcNow.AddSeconds(4));
        // Nothing rotates: neither a 5xx nor a lost answer makes an account wait for a request that may be in flight.
        Assert.Equal(("server_error_500", null), (failingState!.LastError, failingState.UnknownOutcomeAt));
        Assert.Equal(("network_error", null), (lostState!.LastError, lostState.UnknownOutcomeAt));
        Assert.Equal("eBay: 2/2 refreshed, 0 failed", second.Platforms[2].ToString());
        Assert.True(H.Fake.Ebay.IsAccessTokenValid((await H.Db.GetEbayUserAsync(lost)).AccessToken, DateTimeOffset.UtcNow));
        Assert.Equal(lostRefresh, (await H.Db.GetEbayUserAsync(lost)).RefreshToken);
    }

    [Fact]
    public async Task TwoReplicasAtOnce_EachUserCalledOnce_NeverTwoCallsForOneUserAtATime()
    {
        await ArrangeAsync();
        var users = new List<(Guid Id, string Refresh)>();
        for (var i = 0; i < 40; i++)
        {
            users.Add(await UserAsync(TimeSpan.FromMinutes(2)));
        }

        H.Fake.Latency = TimeSpan.FromMilliseconds(150);
        var clis = Enumerable.Range(0, 2).Select(_ => CliProcess.Start(["once"], H.Settings)).ToList();
        var codes = await Task.WhenAll(clis.Select(c => c.WaitForExitAsync(TimeSpan.FromMinutes(2))));
        var outputs = clis.Select(c => c.Stdout + c.Stderr).ToList();
        clis.ForEach(c => c.Dispose());

        Assert.True(codes.All(c => c == 0), string.Join("\n---\n", outputs));
        Assert.Empty(H.Fake.Ebay.SentAtOnce);
        Assert.All(users, u => Assert.Equal(1, H.Fake.Ebay.CallsFor(u.Refresh)));
        foreach (var (id, refresh) in users)
        {
            var row = await H.Db.GetEbayUserAsync(id);
            Assert.True(H.Fake.Ebay.IsAccessTokenValid(row.AccessToken, DateTimeOffset.UtcNow) && row.RefreshToken == refresh);
        }

        // Both replicas took part, and none holds a lease any more.
        Assert.All(outputs, o => Assert.Contains("eBay: found", o, StringComparison.Ordinal));
        Assert.Equal(0, await H.Db.ScalarAsync<long>("SELECT count(*) FROM token_refresh_state WHERE lease_until IS NOT NULL"));
    }

    [Fact]
    public async Task RefreshTokenEnding_AnnouncedAheadOnce_InTheViewNotifyAndWebhook_StillRefreshed_WithdrawnOnReconnect()
    {
        await ArrangeAsync();
        var (id, refresh) = await UserAsync(TimeSpan.FromMinutes(5), endsIn: TimeSpan.FromDays(10));
        var received = new ConcurrentQueue<string>();
        await using var listener = await H.Db.OpenAsync();
        listener.Notification += (_, e) => received.Enqueue(e.Payload);
        await using (var listen = new NpgsqlCommand("LISTEN tokenrefresh_reauth", listener))
        {
            await listen.ExecuteNonQueryAsync();
        }

        var posted = new ConcurrentQueue<string>();
        await using var receiver = await LoopbackHttp.StartAsync(app => app.MapPost("/", async (Microsoft.AspNetCore.Http.HttpContext context) =>
        {
            posted.Enqueue(await new StreamReader(context.Request.Body).ReadToEndAsync());
            context.Response.StatusCode = 204;
        }));
        H.Settings["REAUTH_WEBHOOK_URL"] = receiver.BaseUrl + "/";
        H.Settings["REAUTH_WEBHOOK_SECRET"] = "a-webhook-secret-of-32-characters";

        var (first, logs) = await H.RunCycleAsync();
        var announced = await H.Db.QueryAsync<(string, string)>("SELECT platform, reason FROM token_refresh_needs_reauth WHERE account_id = @id", new { id = id.ToString() });
        var (second, _) = await H.RunCycleAsync();
        var status = await CliProcess.RunAsync(["status", "--json"], H.Settings);
        // The user consents again: a new refresh token, which ends in 18 months.
        await H.Db.ExecuteAsync("UPDATE ebay_users SET refresh_token = @refresh, refresh_token_expires_at = now() + interval '500 days' WHERE user_id = @id",
            new { refresh = H.Fake.Ebay.AddUser(DateTimeOffset.UtcNow.AddDays(500)), id });
        await H.RunCycleAsync();
        await H.Db.ExecuteAsync("SELECT pg_notify('tokenrefresh_reauth', '{\"event\":\"sentinel\"}')");
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (!received.Any(p => p.Contains("sentinel", StringComparison.Ordinal)))
            {
                await listener.WaitAsync(wait.Token);
            }
        }

        Assert.Equal([("ebay", "refresh_token_ending")], announced);
        Assert.Equal("eBay: 1/1 refreshed, 0 failed", first.Platforms[2].ToString());
        Assert.Equal(1, H.Fake.Ebay.CallsFor(refresh));
        Assert.Single(logs, l => l.Id.Name == "RefreshTokenEndingAnnounced" && l.Message.Contains(id.ToString(), StringComparison.Ordinal));
        var notified = JsonDocument.Parse(Assert.Single(received, p => !p.Contains("sentinel", StringComparison.Ordinal))).RootElement;
        Assert.Equal(("needs_reauth", "ebay", id.ToString(), "refresh_token_ending"), (notified.GetProperty("event").GetString(),
            notified.GetProperty("platform").GetString(), notified.GetProperty("account_id").GetString(), notified.GetProperty("reason").GetString()));
        var events = posted.SelectMany(p => JsonDocument.Parse(p).RootElement.GetProperty("events").EnumerateArray()).ToList();
        var event1 = Assert.Single(events);
        Assert.Equal(("needs_reauth", "ebay", id.ToString(), "refresh_token_ending"), (event1.GetProperty("event").GetString(),
            event1.GetProperty("platform").GetString(), event1.GetProperty("account_id").GetString(), event1.GetProperty("reason").GetString()));
        Assert.Equal(0, second.Platforms[2].Found);
        var ebayStatus = JsonDocument.Parse(status.Stdout).RootElement.GetProperty("platforms").EnumerateArray().Single(p => p.GetProperty("platform").GetString() == "eBay");
        Assert.Equal(1, ebayStatus.GetProperty("refreshTokenExpiring").GetInt32());
        Assert.Empty(await H.Db.QueryAsync<string>("SELECT account_id FROM token_refresh_needs_reauth"));
    }

    [Fact]
    public async Task ConfiguredWithoutItsTable_StopsOnlyEbay_WithOneLineNamingTheTable()
    {
        H.UseEbay();
        var etsy = await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(7), DateTimeOffset.UtcNow.AddMinutes(2));
        H.Fake.Shopify.AddStore("fine.myshopify.com", "shpat_fine");
        await H.Db.AddShopifyStoreAsync("fine.myshopify.com", "shpat_fine");

        var (summary, logs) = await H.RunCycleAsync();
        var once = await CliProcess.RunAsync(["once"], H.Settings);
        var status = await CliProcess.RunAsync(["status"], H.Settings);

        Assert.Equal("Etsy: 1/1 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed; eBay: not run (ebay_users: no such table on this role's search_path (the main application's table; scripts/sql/ shows it))", summary.ToString());
        var line = Assert.Single(logs, l => l.Level >= LogLevel.Error && l.Message.StartsWith("eBay", StringComparison.Ordinal));
        Assert.StartsWith("eBay: not run: ebay_users: no such table", line.Message, StringComparison.Ordinal);
        Assert.NotEqual("old-access-token", (await H.Db.GetEtsyUserAsync(etsy)).AccessToken);
        Assert.Equal(1, once.ExitCode);
        Assert.Equal(0, status.ExitCode);
        Assert.Contains("not run: ebay_users: no such table", status.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, H.Fake.Ebay.TotalCalls);
    }

    [Fact]
    public async Task NotConfigured_DoesNothing_AndRefreshNamesAUserThroughTheCli()
    {
        await H.Db.AddEbayTableAsync();
        var (id, refresh) = await UserAsync(TimeSpan.FromMinutes(2));

        var (off, _) = await H.RunCycleAsync();
        var refused = await CliProcess.RunAsync(["refresh", "--ebay-user", id.ToString()], H.Settings);
        H.UseEbay();
        var forced = await CliProcess.RunAsync(["refresh", "--ebay-user", id.ToString().ToUpperInvariant()], H.Settings);

        Assert.Equal("Etsy: 0/0 refreshed, 0 failed; Shopify: 0/0 validated, 0 deactivated, 0 failed", off.ToString());
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("No platform takes --ebay-user here: its settings are not set.", refused.Stderr, StringComparison.Ordinal);
        Assert.Equal((0, $"eBay account {id}: refreshed"), (forced.ExitCode, forced.Stdout.Trim()));
        Assert.Equal(1, H.Fake.Ebay.CallsFor(refresh));
    }
}
