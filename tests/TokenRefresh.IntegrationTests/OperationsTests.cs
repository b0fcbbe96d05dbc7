using System.Text.Json;
using Npgsql;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>migrate, status, and the least-privilege role, as an operator uses them.</summary>
public sealed class OperationsTests : HarnessTests
{

    protected override async Task<ServiceHarness> StartAsync() => await ServiceHarness.StartAsync(await TestDatabase.CreateAsync(migrated: false));

    [Fact]
    public async Task Migrate_AppliesOnceThenIsANoOp_AndTheCycleNeedsIt()
    {
        H.Settings["DATABASE_URL"] = H.Db.AdminUrl;
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));

        var (before, beforeOut, _) = await CliProcess.RunAsync(["once"], H.Settings);
        var (first, firstOut, _) = await CliProcess.RunAsync(["migrate"], H.Settings);
        var (second, secondOut, _) = await CliProcess.RunAsync(["migrate"], H.Settings);
        var (after, _, _) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(2, before);
        Assert.Contains("run `tokenrefresh migrate`", beforeOut, StringComparison.Ordinal);
        Assert.Equal((0, "Applied: 001_account_state, 002_account_id_text"), (first, firstOut.Trim()));
        Assert.Equal((0, "The service's table is up to date; nothing to apply."), (second, secondOut.Trim()));
        Assert.Equal(0, after);
        Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Migrate_RailwaysPreDeployCommand_WorksAsTheCommandOrAsArgumentsToTheEntrypoint(bool afterEntrypoint)
    {
        await using var fresh = await TestDatabase.CreateAsync(migrated: false);
        using var doc = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(Repo.File("railway.json")));
        var command = doc.RootElement.GetProperty("deploy").GetProperty("preDeployCommand")[0].GetString()!.Split(' ');
        H.Settings["DATABASE_URL"] = fresh.AdminUrl;

        // Run as the command itself (the process gets `migrate`), or given to the ENTRYPOINT, tokenrefresh, as its arguments.
        var (code, stdout, _) = await CliProcess.RunAsync(afterEntrypoint ? command : command[1..], H.Settings);

        Assert.Equal((0, "Applied: 001_account_state, 002_account_id_text"), (code, stdout.Trim()));
    }

    [Fact]
    public async Task ServiceRole_CannotReadOrWriteBeyondItsColumns()
    {
        await H.Db.MigrateAndGrantAsync();
        await H.Db.ExecuteAsync("ALTER TABLE etsy_users ADD COLUMN email text");
        await using var service = new NpgsqlConnection(PostgresServer.ConnectionString(H.Db.Url));
        await service.OpenAsync();

        foreach (var sql in new[]
        {
            "SELECT email FROM etsy_users",
            "SELECT access_token FROM etsy_users",
            "UPDATE etsy_users SET email = 'x'",
            "UPDATE shopify_stores SET access_token = 'x'",
            "DELETE FROM etsy_users",
            "INSERT INTO shopify_stores (shop_domain) VALUES ('x.myshopify.com')",
            "DROP TABLE token_refresh_state",
        })
        {
            await using var command = new NpgsqlCommand(sql, service);
            var e = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
            Assert.True(e.SqlState is PostgresErrorCodes.InsufficientPrivilege, $"{sql}: {e.SqlState}");
        }
    }

    [Fact]
    public async Task Status_ShowsDueBackingOffAndReauthAccounts_AsTableAndJson()
    {
        await H.Db.MigrateAndGrantAsync();
        var revoked = H.Fake.Etsy.AddAccount(1);
        var revokedId = await H.Db.AddEtsyUserAsync(revoked, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Etsy.Revoke(revoked);
        var flaky = H.Fake.Etsy.AddAccount(2);
        var flakyId = await H.Db.AddEtsyUserAsync(flaky, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Etsy.SetFault(flaky, FakeFault.ServerError);
        var fine = H.Fake.Etsy.AddAccount(3);
        await H.Db.AddEtsyUserAsync(fine, DateTimeOffset.UtcNow.AddMinutes(1));
        await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(4), DateTimeOffset.UtcNow.AddMinutes(30));
        H.Fake.Shopify.AddStore("locked.myshopify.com", "shpat_locked");
        var lockedId = await H.Db.AddShopifyStoreAsync("locked.myshopify.com", "shpat_locked");
        H.Fake.Shopify.SetFault("locked.myshopify.com", FakeFault.Locked);
        await H.RunCycleAsync();
        await H.Db.AddEtsyUserAsync(H.Fake.Etsy.AddAccount(5), DateTimeOffset.UtcNow.AddMinutes(2));

        var (code, json, stderr) = await CliProcess.RunAsync(["status", "--json"], H.Settings);
        var (tableCode, table, _) = await CliProcess.RunAsync(["status"], H.Settings);

        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        var etsy = doc.RootElement.GetProperty("platforms")[0];
        Assert.Equal("Etsy", etsy.GetProperty("platform").GetString());
        Assert.Equal(1, etsy.GetProperty("due").GetInt64());
        Assert.Equal(1, etsy.GetProperty("recent").GetInt64());
        Assert.Equal(1, etsy.GetProperty("backingOff").GetInt64());
        Assert.Equal(1, etsy.GetProperty("needsReauth").GetInt64());
        var accounts = etsy.GetProperty("accounts").EnumerateArray().ToDictionary(a => a.GetProperty("id").GetGuid());
        Assert.Equal("invalid_grant", accounts[revokedId].GetProperty("lastError").GetString());
        Assert.Equal("needs_reauth", accounts[revokedId].GetProperty("group").GetString());
        Assert.Equal("backing_off", accounts[flakyId].GetProperty("group").GetString());
        Assert.Equal("server_error_500", accounts[flakyId].GetProperty("lastError").GetString());
        var shopify = doc.RootElement.GetProperty("platforms")[1];
        Assert.Equal(1, shopify.GetProperty("backingOff").GetInt64());
        Assert.Equal("shop_locked_423", shopify.GetProperty("accounts")[0].GetProperty("lastError").GetString());
        Assert.Equal("locked.myshopify.com", shopify.GetProperty("accounts")[0].GetProperty("shop").GetString());
        Assert.DoesNotContain("Refresh cycle", stderr, StringComparison.Ordinal);

        Assert.Equal(0, tableCode);
        Assert.Contains("Needs re-authorisation", table, StringComparison.Ordinal);
        Assert.Contains(revokedId.ToString(), table, StringComparison.Ordinal);
        Assert.Contains(flakyId.ToString(), table, StringComparison.Ordinal);
        Assert.Contains(lockedId.ToString(), table, StringComparison.Ordinal);
        foreach (var secret in new[] { revoked, flaky, fine, "shpat_locked", H.Db.Password })
        {
            Assert.DoesNotContain(secret, json + table, StringComparison.Ordinal);
        }
    }
}
