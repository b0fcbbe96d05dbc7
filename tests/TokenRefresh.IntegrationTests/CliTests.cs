using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

public sealed class CliTests : HarnessTests
{
    private const int SigTerm = 15;


    [Fact]
    public async Task Once_EveryAccountFine_ExitsZeroAndPrintsTheSummaryWithoutSecrets()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1), accessToken: "etsy-old-access-token-x");
        H.Fake.Shopify.AddStore("a.myshopify.com", "shpat_cli_secret_token");
        await H.Db.AddShopifyStoreAsync("a.myshopify.com", "shpat_cli_secret_token");

        var (code, stdout, stderr) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(0, code);
        Assert.Contains("Etsy: 1/1 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed", stdout, StringComparison.Ordinal);
        Assert.Contains($"Etsy account {id}: refreshed", stdout, StringComparison.Ordinal);
        var issued = H.Fake.Etsy.IssuedFor(refresh)!.Value;
        foreach (var secret in new[] { refresh, issued.AccessToken, issued.RefreshToken, "etsy-old-access-token-x", "shpat_cli_secret_token",
                     H.Fake.Etsy.SharedSecret, H.Fake.Shopify.ApiSecret, H.Db.Password })
        {
            Assert.DoesNotContain(secret, stdout + stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Once_LogFormatJson_WritesOneJsonObjectPerEventWithTheAccountsScope_AndNoSecret()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Settings["LOG_FORMAT"] = "json";

        var (code, stdout, stderr) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(0, code);
        var events = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        Assert.All(events, e => Assert.StartsWith("TokenRefresh.", e.GetProperty("Category").GetString(), StringComparison.Ordinal));
        var account = Assert.Single(events, e => e.GetProperty("Message").GetString() == $"Etsy account {id}: refreshed");
        Assert.Equal("Information", account.GetProperty("LogLevel").GetString());
        Assert.Equal(3, account.GetProperty("EventId").GetInt32());
        Assert.Contains(account.GetProperty("Scopes").EnumerateArray(), s => s.TryGetProperty("AccountId", out var a) && a.GetString() == id.ToString());
        var summary = Assert.Single(events, e => e.GetProperty("EventId").GetInt32() == 10);
        Assert.Equal("Etsy: 1/1 refreshed, 0 failed; Shopify: 0/0 validated, 0 deactivated, 0 failed", summary.GetProperty("State").GetProperty("Summary").GetString());
        var issued = H.Fake.Etsy.IssuedFor(refresh)!.Value;
        foreach (var secret in new[] { refresh, issued.AccessToken, issued.RefreshToken, H.Fake.Etsy.SharedSecret, H.Db.Password })
        {
            Assert.DoesNotContain(secret, stdout + stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Once_LogFormatUnknown_ExitsTwoWithOneLineNamingIt()
    {
        H.Settings["LOG_FORMAT"] = "xml";

        var (code, _, stderr) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("Configuration error: LOG_FORMAT 'xml' is not one of text (the default: one readable line per event) or json (one JSON object per event).", line.Trim());
    }

    [Fact]
    public async Task Once_AnAccountFails_ExitsOne()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Fake.Etsy.SetFault(refresh, FakeFault.ServerError);

        var (code, stdout, _) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(1, code);
        Assert.Contains("Etsy: 0/1 refreshed, 1 failed", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_MalformedSetting_ExitsTwoWithOneLineNamingIt()
    {
        H.Settings["ETSY_REFRESH_MARGIN_MINUTES"] = "soon";

        var (code, stdout, stderr) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(2, code);
        Assert.Equal("", stdout.Trim());
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("Configuration error: ETSY_REFRESH_MARGIN_MINUTES 'soon' must be a whole number from 0 to 1440.", line.Trim());
    }

    [Fact]
    public async Task Once_MalformedDatabaseUrl_NamesTheSettingButNotThePassword()
    {
        H.Settings["DATABASE_URL"] = H.Db.Url + "?sslmode=sometimes";

        var (code, _, stderr) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(2, code);
        Assert.StartsWith("Configuration error: DATABASE_URL", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(H.Db.Password, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_DatabaseUnreachable_ExitsTwoWithTheStackTrace()
    {
        H.Settings["DATABASE_URL"] = "postgresql://nobody:unreachable-pw@127.0.0.1:1/none?connect_timeout=2";

        var (code, stdout, _) = await CliProcess.RunAsync(["once"], H.Settings);

        Assert.Equal(2, code);
        Assert.Contains("the cycle could not run", stdout, StringComparison.Ordinal);
        Assert.Contains("   at ", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("unreachable-pw", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_DotEnvInWorkingDirectory_IsReadAndTheEnvironmentWins()
    {
        var dir = Directory.CreateTempSubdirectory("tokenrefresh-env-");
        try
        {
            await File.WriteAllLinesAsync(Path.Combine(dir.FullName, ".env"),
                H.Settings.Select(kv => $"{kv.Key}=\"{kv.Value}\"").Append("LOG_LEVEL=ERROR"));
            var refresh = H.Fake.Etsy.AddAccount(1);
            var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));

            var (code, stdout, _) = await CliProcess.RunAsync(["once"], new Dictionary<string, string?> { ["LOG_LEVEL"] = "INFO" }, dir.FullName);

            Assert.Equal(0, code);
            Assert.Contains("Etsy: 1/1 refreshed", stdout, StringComparison.Ordinal);
            Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Run_TheOriginalServicesDotEnvUnchanged_RunsACycleNowThenEveryIntervalMinutes()
    {
        var dir = Directory.CreateTempSubdirectory("tokenrefresh-original-env-");
        try
        {
            // The original README's .env, with this deployment's values.
            await File.WriteAllTextAsync(Path.Combine(dir.FullName, ".env"), $"""
                # Database
                DATABASE_URL={H.Db.Url}

                # Etsy OAuth
                ETSY_CLIENT_ID={H.Fake.Etsy.ClientId}
                ETSY_CLIENT_SECRET={H.Fake.Etsy.SharedSecret}

                # Shopify OAuth
                SHOPIFY_API_KEY={H.Fake.Shopify.ApiKey}
                SHOPIFY_API_SECRET={H.Fake.Shopify.ApiSecret}

                # Service Configuration
                REFRESH_INTERVAL_MINUTES=3
                LOG_LEVEL=INFO

                """);
            var refresh = H.Fake.Etsy.AddAccount(1);
            var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
            // Only where the fake platforms listen comes from the environment.
            var environment = new Dictionary<string, string?>
            {
                ["ETSY_API_BASE_URL"] = H.Settings["ETSY_API_BASE_URL"], ["SHOPIFY_API_BASE_URL"] = H.Settings["SHOPIFY_API_BASE_URL"],
            };
            using var cli = CliProcess.Start(["run"], environment, dir.FullName);
            await cli.WaitForOutputAsync("Next cycle at", TimeSpan.FromSeconds(60));
            cli.Signal(SigTerm);

            Assert.Equal(0, await cli.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains("Running a cycle now and then every 3 minutes (REFRESH_INTERVAL_MINUTES)", cli.Stdout, StringComparison.Ordinal);
            Assert.Contains("Etsy: 1/1 refreshed, 0 failed", cli.Stdout, StringComparison.Ordinal);
            Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Run_Sigterm_StopsPromptlyAfterTheCycleWithExitZero()
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Settings["REFRESH_SCHEDULE"] = "0 0 0 1 1 *"; // next run a long way off: the process must be waiting
        using var cli = CliProcess.Start(["run"], H.Settings);
        await cli.WaitForOutputAsync("Refresh cycle completed", TimeSpan.FromSeconds(60));

        var signalled = DateTime.UtcNow;
        cli.Signal(SigTerm);
        var code = await cli.WaitForExitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(0, code);
        Assert.True(DateTime.UtcNow - signalled < TimeSpan.FromSeconds(5), $"took {DateTime.UtcNow - signalled}");
        Assert.Contains("Stopped", cli.Stdout, StringComparison.Ordinal);
        Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Fact]
    public async Task NoCommand_PrintsUsageAndExitsTwo()
    {
        var (code, _, stderr) = await CliProcess.RunAsync([], H.Settings);

        Assert.Equal(2, code);
        Assert.Contains("Usage: tokenrefresh", stderr, StringComparison.Ordinal);
    }
}
