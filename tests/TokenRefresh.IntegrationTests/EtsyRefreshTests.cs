using Microsoft.Extensions.Logging;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

public sealed class EtsyRefreshTests : HarnessTests
{


    private async Task<(Guid Id, string RefreshToken)> DueUserAsync(TimeSpan expiresIn, long etsyUserId = 1001)
    {
        var refresh = H.Fake.Etsy.AddAccount(etsyUserId);
        return (await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow + expiresIn), refresh);
    }

    [Fact]
    public async Task Cycle_TokenExpiringWithinMargin_StoresTheRotatedPairAndNewExpiry()
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromMinutes(5));
        var before = DateTime.UtcNow;

        var (summary, _) = await H.RunCycleAsync();

        var issued = H.Fake.Etsy.IssuedFor(refresh)!.Value;
        var row = await H.Db.GetEtsyUserAsync(id);
        Assert.Equal(issued.AccessToken, row.AccessToken);
        Assert.Equal(issued.RefreshToken, row.RefreshToken);
        Assert.InRange(row.ExpiresAt!.Value, before.AddSeconds(3600 - 5), DateTime.UtcNow.AddSeconds(3600 + 5));
        Assert.InRange(row.UpdatedAt, before.AddSeconds(-5), DateTime.UtcNow.AddSeconds(5));
        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", summary.Platforms[0].ToString());
        Assert.Equal(1, H.Fake.Etsy.CallsFor(refresh));
    }

    [Fact]
    public async Task Cycle_AlreadyExpiredToken_IsRefreshed()
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromHours(-3));

        await H.RunCycleAsync();

        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Fact]
    public async Task Cycle_TokenNotYetDue_IsLeftAloneAndEtsyIsNotCalled()
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromMinutes(20));
        var before = await H.Db.GetEtsyUserAsync(id);

        var (summary, _) = await H.RunCycleAsync();

        Assert.Equal(before, await H.Db.GetEtsyUserAsync(id));
        Assert.Equal(0, H.Fake.Etsy.CallsFor(refresh));
        Assert.Equal(0, summary.Platforms[0].Found);
    }

    [Fact]
    public async Task Cycle_MarginSetting_WidensWhatIsDue()
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromMinutes(20));
        H.Settings["ETSY_REFRESH_MARGIN_MINUTES"] = "30";

        await H.RunCycleAsync();

        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Fact]
    public async Task Cycle_SeveralDue_RefreshesSoonestFirst()
    {
        var later = await DueUserAsync(TimeSpan.FromMinutes(8), 1);
        var sooner = await DueUserAsync(TimeSpan.FromMinutes(-30), 2);
        var middle = await DueUserAsync(TimeSpan.FromMinutes(1), 3);
        H.Settings["REFRESH_MAX_CONCURRENCY"] = "1"; // one at a time, so the order of claims is the order of the log

        var (_, logs) = await H.RunCycleAsync();

        var order = logs.Where(l => l.Message.EndsWith(": refreshed", StringComparison.Ordinal)).Select(l => l.Message).ToList();
        Assert.Equal(3, order.Count);
        Assert.Contains(sooner.Id.ToString(), order[0], StringComparison.Ordinal);
        Assert.Contains(middle.Id.ToString(), order[1], StringComparison.Ordinal);
        Assert.Contains(later.Id.ToString(), order[2], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(FakeFault.InvalidGrant, "invalid_grant")]
    [InlineData(FakeFault.ServerError, "server_error_500")]
    [InlineData(FakeFault.RateLimited, "rate_limited")]
    [InlineData(FakeFault.Hang, "timeout")]
    [InlineData(FakeFault.ResetConnection, "network_error")]
    [InlineData(FakeFault.NotJson, "malformed_response")]
    [InlineData(FakeFault.TruncatedJson, "malformed_response")]
    [InlineData(FakeFault.MissingRefreshToken, "malformed_response")]
    public async Task Cycle_RefreshFails_RowStaysExactlyAsItWasAndTheReasonIsLogged(FakeFault fault, string reason)
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromMinutes(2));
        var (otherId, otherRefresh) = await DueUserAsync(TimeSpan.FromMinutes(3), 2002);
        H.Fake.Etsy.SetFault(refresh, fault);
        var before = await H.Db.GetEtsyUserAsync(id);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal(before, await H.Db.GetEtsyUserAsync(id));
        Assert.Equal(H.Fake.Etsy.IssuedFor(otherRefresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(otherId)).RefreshToken);
        Assert.Equal("Etsy: 1/2 refreshed, 1 failed", summary.Platforms[0].ToString());
        var line = Assert.Single(logs, l => l.Level == LogLevel.Error && l.Message.Contains(id.ToString(), StringComparison.Ordinal));
        Assert.Contains($"failed ({reason}", line.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cycle_WrongSharedSecret_FailsWithForbiddenAndChangesNothing()
    {
        var (id, _) = await DueUserAsync(TimeSpan.FromMinutes(2));
        H.Settings["ETSY_CLIENT_SECRET"] = "not-the-secret";
        var before = await H.Db.GetEtsyUserAsync(id);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal(before, await H.Db.GetEtsyUserAsync(id));
        Assert.Equal(1, summary.Platforms[0].Failed);
        // A configuration fault: the platform stops for the cycle (PlatformFaultTests), the account is not marked.
        Assert.Contains(logs, l => l.Message.Contains("refused the app's credentials (forbidden)", StringComparison.Ordinal));
        Assert.Null(await H.Db.GetStateAsync("etsy", id));
    }

    [Theory]
    [InlineData(FakeFault.MissingExpiresIn)]
    [InlineData(FakeFault.AbsurdExpiresIn)]
    public async Task Cycle_MissingOrAbsurdExpiresIn_StoresAConservativeExpiryAndSaysSo(FakeFault fault)
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromMinutes(2));
        H.Fake.Etsy.SetFault(refresh, fault);
        var before = DateTime.UtcNow;

        var (_, logs) = await H.RunCycleAsync();

        var row = await H.Db.GetEtsyUserAsync(id);
        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, row.RefreshToken);
        Assert.InRange(row.ExpiresAt!.Value, before.AddMinutes(30).AddSeconds(-5), DateTime.UtcNow.AddMinutes(30).AddSeconds(5));
        Assert.Contains(logs, l => l.Level == LogLevel.Warning && l.Message.Contains("assuming 30 minutes", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Cycle_DatabaseErrorOnOneAccount_RollsBackThatAccountAndGoesOn()
    {
        var (badId, _) = await DueUserAsync(TimeSpan.FromMinutes(1), 1);
        var (goodId, goodRefresh) = await DueUserAsync(TimeSpan.FromMinutes(2), 2);
        await H.Db.ExecuteAsync($$"""
            CREATE FUNCTION reject_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected failure'; END $$;
            CREATE TRIGGER reject_update BEFORE UPDATE ON etsy_users
            FOR EACH ROW WHEN (OLD.{{H.Db.EtsyKey}} = '{{badId}}') EXECUTE FUNCTION reject_update();
            """);
        var before = await H.Db.GetEtsyUserAsync(badId);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal(before, await H.Db.GetEtsyUserAsync(badId));
        Assert.Equal(H.Fake.Etsy.IssuedFor(goodRefresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(goodId)).RefreshToken);
        Assert.Equal("Etsy: 1/2 refreshed, 1 failed", summary.Platforms[0].ToString());
        var critical = Assert.Single(logs, l => l.Level == LogLevel.Critical);
        Assert.Contains(badId.ToString(), critical.Message, StringComparison.Ordinal);
        Assert.Contains("received but not stored", critical.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cycle_AccountLeasedByAnotherProcess_IsLeftToItWithoutCallingEtsy_UntilTheLeaseRunsOut()
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromMinutes(1));
        await H.Db.ExecuteAsync("""
            INSERT INTO token_refresh_state (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
            VALUES ('etsy', @id, now() + interval '1 minute', encode(sha256(convert_to(@refresh, 'UTF8')), 'hex'), 'other-host/1/1', now())
            """, new { id = id.ToString(), refresh });

        var (summary, logs) = await H.RunCycleAsync();

        // Counted as due, but the other process's to refresh and to report: nothing here claims it or calls Etsy for it.
        Assert.Equal(0, H.Fake.Etsy.CallsFor(refresh));
        Assert.Contains(logs, l => l.Message == "Etsy: found 1 accounts due");
        Assert.Equal("Etsy: 0/0 refreshed, 0 failed", summary.Platforms[0].ToString());
        Assert.Equal("other-host/1/1", await H.Db.ScalarAsync<string>("SELECT lease_holder FROM token_refresh_state WHERE account_id = @id", new { id = id.ToString() }));

        // Two minutes on, the lease has run out uncleared: the account is claimed, with a warning that the other
        // process may have sent its token (here it had not, and Etsy rotates it).
        H.Time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(2));
        var (later, laterLogs) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", later.Platforms[0].ToString());
        Assert.Contains(laterLogs, l => l.Level == Microsoft.Extensions.Logging.LogLevel.Warning && l.Message.Contains("ran out without an outcome", StringComparison.Ordinal));
        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        Assert.Null((await H.Db.ScalarAsync<DateTime?>("SELECT lease_until FROM token_refresh_state WHERE account_id = @id", new { id = id.ToString() })));
    }

    [Fact]
    public async Task Cycle_RowLockedByTheMainApplication_IsSkippedWithoutCallingEtsy()
    {
        var (id, refresh) = await DueUserAsync(TimeSpan.FromMinutes(1));
        await using var other = await H.Db.OpenAsync();
        await using var tx = await other.BeginTransactionAsync();
        await using (var command = new Npgsql.NpgsqlCommand($"SELECT 1 FROM etsy_users WHERE {H.Db.EtsyKey} = '{id}' FOR UPDATE", other, tx))
        {
            await command.ExecuteScalarAsync();
        }

        var (summary, _) = await H.RunCycleAsync();

        // Passed over, not waited for: the cycle ends with the row still locked, and nothing sent for it.
        Assert.Equal(0, H.Fake.Etsy.CallsFor(refresh));
        Assert.Equal("Etsy: 0/0 refreshed, 0 failed", summary.Platforms[0].ToString());

        // Once the main application has written the row, the next cycle refreshes it.
        await tx.CommitAsync();
        var (next, _) = await H.RunCycleAsync();
        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", next.Platforms[0].ToString());
        Assert.Equal(H.Fake.Etsy.IssuedFor(refresh)!.Value.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }
}
