using Microsoft.Extensions.Logging;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// No database error drops a received pair: each class of fault is injected at the moment of the write (a trigger on
/// etsy_users raises it), and the pair is stored after a retry on a fresh connection, or, when no retry can succeed,
/// reported at Critical with the account and what to fix.
/// </summary>
public sealed class WriteFaultTests : HarnessTests
{
    private async Task InjectOnceAsync(string sqlState, int times = 1) => await H.Db.ExecuteAsync($$"""
        CREATE SEQUENCE write_fault_count;
        CREATE FUNCTION write_fault() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            IF nextval('write_fault_count') <= {{times}} THEN RAISE EXCEPTION 'injected {{sqlState}}' USING ERRCODE = '{{sqlState}}'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER write_fault BEFORE UPDATE ON etsy_users FOR EACH ROW EXECUTE FUNCTION write_fault();
        """);

    [Theory]
    [InlineData("26000")] // prepared statement does not exist (a pooler moved the session)
    [InlineData("42P05")] // prepared statement already exists
    [InlineData("0A000")] // cached plan must not change result type
    [InlineData("25P01")] // no active SQL transaction
    [InlineData("57P01")] // admin shutdown
    [InlineData("08006")] // connection failure
    [InlineData("53300")] // too many connections
    [InlineData("40001")] // serialization failure
    [InlineData("40P01")] // deadlock detected
    [InlineData("57014")] // statement timeout
    public async Task Write_TransientFault_ThePairIsStoredAfterARetry(string sqlState)
    {
        var users = await Chains.DueUsersAsync(H, 1);
        await InjectOnceAsync(sqlState);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", summary.Platforms[0].ToString());
        await Chains.AssertNoTokenLostAsync(H, users);
        Assert.NotNull(H.Fake.Etsy.IssuedFor(users[0].Refresh));
        Assert.Single(logs, l => l.Message.Contains("the rotated pair was stored after 2 attempts", StringComparison.Ordinal));
        Assert.DoesNotContain(logs, l => l.Level == LogLevel.Critical);
    }

    [Fact]
    public async Task Write_PermissionDenied_IsReportedAtCriticalWithTheAccountAndWhatToFix_WithoutRetrying()
    {
        var users = await Chains.DueUsersAsync(H, 1);
        await InjectOnceAsync("42501", times: int.MaxValue);

        var (summary, logs) = await H.RunCycleAsync();

        Assert.Equal("Etsy: 0/1 refreshed, 1 failed", summary.Platforms[0].ToString());
        var critical = Assert.Single(logs, l => l.Level == LogLevel.Critical);
        Assert.Contains(users[0].Id.ToString(), critical.Message, StringComparison.Ordinal);
        // No retry can outlive a missing grant: it is said after the first attempt, not after the cycle's budget.
        Assert.Contains("received but not stored after 1 attempts (permission denied (42501): grant the service's role UPDATE on the token columns", critical.Message, StringComparison.Ordinal);
    }
}
