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
    public async Task Migrate_AppliesOnceThenIsANoOp()
    {
        H.Settings["DATABASE_URL"] = H.Db.AdminUrl;
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));

        var (first, firstOut, _) = await CliProcess.RunAsync(["migrate"], H.Settings);
        var (second, secondOut, _) = await CliProcess.RunAsync(["migrate"], H.Settings);
        var (after, afterOut, _) = await CliProcess.RunAsync(["once"], H.Settings);

        // (A cycle before `migrate`: SelfHealingTests, for the tables' owner and for a least-privilege role.)
        Assert.DoesNotContain("Created or upgraded the service's own tables", afterOut, StringComparison.Ordinal);
        Assert.Equal((0, "Applied: 001_account_state, 002_account_id_text, 003_leases_and_shared_rate, 004_reauth_signals, 005_notices, 006_refresh_token_ending, 007_validation_schedule, 008_notice_detail"), (first, firstOut.Trim()));
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

        Assert.Equal((0, "Applied: 001_account_state, 002_account_id_text, 003_leases_and_shared_rate, 004_reauth_signals, 005_notices, 006_refresh_token_ending, 007_validation_schedule, 008_notice_detail"), (code, stdout.Trim()));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ServiceRole_CanUseItsColumnsAndNothingElse(bool expiringColumns)
    {
        await H.Db.MigrateAndGrantAsync();
        if (expiringColumns)
        {
            await H.Db.AddExpiringColumnsAsync();
        }

        await H.Db.ExecuteAsync("CREATE TABLE app_orders (id int PRIMARY KEY, total numeric)");
        await using var service = new NpgsqlConnection(PostgresServer.ConnectionString(H.Db.Url));
        await service.OpenAsync();

        // What the service does: read its columns, write the token columns, keep its own state.
        string[] allowed =
        [
            "SELECT user_id, refresh_token, token_expires_at FROM etsy_users",
            "UPDATE etsy_users SET access_token = 'a', refresh_token = 'r', token_expires_at = now(), updated_at = now() WHERE user_id IS NULL",
            "SELECT id, shop_domain, access_token, is_active FROM shopify_stores",
            "UPDATE shopify_stores SET is_active = false, updated_at = now() WHERE id IS NULL",
            "INSERT INTO token_refresh_state (platform, account_id) VALUES ('etsy', 'x') ON CONFLICT DO NOTHING",
            "DELETE FROM token_refresh_state WHERE account_id = 'x'",
            .. (expiringColumns
                ? (string[])["SELECT refresh_token, token_expires_at, refresh_token_expires_at FROM shopify_stores",
                    "UPDATE shopify_stores SET access_token = 'a', refresh_token = 'r', token_expires_at = now(), refresh_token_expires_at = now() WHERE id IS NULL"]
                : []),
        ];
        foreach (var sql in allowed)
        {
            await using var command = new NpgsqlCommand(sql, service);
            await command.ExecuteNonQueryAsync();
        }

        string[] refused =
        [
            "SELECT etsy_user_id FROM etsy_users",
            "SELECT shop_name, created_at FROM etsy_users",
            "SELECT access_token FROM etsy_users",
            "UPDATE etsy_users SET shop_name = 'x'",
            "UPDATE etsy_users SET user_id = gen_random_uuid() WHERE user_id IS NULL",
            "UPDATE shopify_stores SET shop_domain = 'x'",
            "UPDATE shopify_stores SET scope = 'x'",
            "UPDATE shopify_stores SET id = gen_random_uuid() WHERE id IS NULL",
            "DELETE FROM etsy_users",
            "DELETE FROM shopify_stores",
            "INSERT INTO shopify_stores (shop_domain) VALUES ('x.myshopify.com')",
            "INSERT INTO etsy_users DEFAULT VALUES",
            "TRUNCATE etsy_users",
            "SELECT * FROM app_orders",
            "UPDATE app_orders SET total = 0",
            "DROP TABLE token_refresh_state",
            "ALTER TABLE etsy_users ADD COLUMN x text",
            "ALTER TABLE token_refresh_state ADD COLUMN x text",
            "CREATE TABLE own (id int)",
            "DELETE FROM token_refresh_migrations",
            .. (expiringColumns ? [] : (string[])["UPDATE shopify_stores SET access_token = 'x'"]),
        ];
        foreach (var sql in refused)
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
