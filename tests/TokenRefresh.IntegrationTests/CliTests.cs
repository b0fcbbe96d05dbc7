using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

public sealed class CliTests : IAsyncLifetime
{
    private const int SigTerm = 15;
    private ServiceHarness _h = null!;

    public async Task InitializeAsync() => _h = await ServiceHarness.StartAsync();

    public async Task DisposeAsync() => await _h.DisposeAsync();

    [Fact]
    public async Task Once_EveryAccountFine_ExitsZeroAndPrintsTheSummaryWithoutSecrets()
    {
        var refresh = _h.Fake.Etsy.AddAccount(1);
        var id = await _h.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1), accessToken: "etsy-old-access-token-x");
        _h.Fake.Shopify.AddStore("a.myshopify.com", "shpat_cli_secret_token");
        await _h.Db.AddShopifyStoreAsync("a.myshopify.com", "shpat_cli_secret_token");

        var (code, stdout, stderr) = await CliProcess.RunAsync(["once"], _h.Settings);

        Assert.Equal(0, code);
        Assert.Contains("Etsy: 1/1 refreshed, 0 failed; Shopify: 1/1 validated, 0 deactivated, 0 failed", stdout, StringComparison.Ordinal);
        Assert.Contains($"Etsy account {id}: refreshed", stdout, StringComparison.Ordinal);
        var issued = _h.Fake.Etsy.IssuedFor(refresh)!.Value;
        foreach (var secret in new[] { refresh, issued.AccessToken, issued.RefreshToken, "etsy-old-access-token-x", "shpat_cli_secret_token",
                     _h.Fake.Etsy.SharedSecret, _h.Fake.Shopify.ApiSecret, _h.Db.Password })
        {
            Assert.DoesNotContain(secret, stdout + stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Once_AnAccountFails_ExitsOne()
    {
        var refresh = _h.Fake.Etsy.AddAccount(1);
        await _h.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        _h.Fake.Etsy.SetFault(refresh, FakeFault.ServerError);

        var (code, stdout, _) = await CliProcess.RunAsync(["once"], _h.Settings);

        Assert.Equal(1, code);
        Assert.Contains("Etsy: 0/1 refreshed, 1 failed", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_MalformedSetting_ExitsTwoWithOneLineNamingIt()
    {
        _h.Settings["ETSY_REFRESH_MARGIN_MINUTES"] = "soon";

        var (code, stdout, stderr) = await CliProcess.RunAsync(["once"], _h.Settings);

        Assert.Equal(2, code);
        Assert.Equal("", stdout.Trim());
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("Configuration error: ETSY_REFRESH_MARGIN_MINUTES 'soon' must be a whole number from 0 to 1440.", line.Trim());
    }

    [Fact]
    public async Task Once_MalformedDatabaseUrl_NamesTheSettingButNotThePassword()
    {
        _h.Settings["DATABASE_URL"] = _h.Db.Url + "?sslmode=sometimes";

        var (code, _, stderr) = await CliProcess.RunAsync(["once"], _h.Settings);

        Assert.Equal(2, code);
        Assert.StartsWith("Configuration error: DATABASE_URL", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(_h.Db.Password, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_DatabaseUnreachable_ExitsTwoWithTheStackTrace()
    {
        _h.Settings["DATABASE_URL"] = "postgresql://nobody:unreachable-pw@127.0.0.1:1/none?connect_timeout=2";

        var (code, stdout, _) = await CliProcess.RunAsync(["once"], _h.Settings);

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
                _h.Settings.Select(kv => $"{kv.Key}=\"{kv.Value}\"").Append("LOG_LEVEL=ERROR"));
            var refresh = _h.Fake.Etsy.AddAccount(1);
            var id = await _h.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));

            var (code, stdout, _) = await CliProcess.RunAsync(["once"], new Dictionary<string, string?> { ["LOG_LEVEL"] = "INFO" }, dir.FullName);

            Assert.Equal(0, code);
            Assert.Contains("Etsy: 1/1 refreshed", stdout, StringComparison.Ordinal);
            Assert.NotEqual(refresh, (await _h.Db.GetEtsyUserAsync(id)).RefreshToken);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Run_Sigterm_StopsPromptlyAfterTheCycleWithExitZero()
    {
        var refresh = _h.Fake.Etsy.AddAccount(1);
        var id = await _h.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        _h.Settings["REFRESH_SCHEDULE"] = "0 0 0 1 1 *"; // next run a long way off: the process must be waiting
        using var cli = CliProcess.Start(["run"], _h.Settings);
        await cli.WaitForOutputAsync("Refresh cycle completed", TimeSpan.FromSeconds(60));

        var signalled = DateTime.UtcNow;
        cli.Signal(SigTerm);
        var code = await cli.WaitForExitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(0, code);
        Assert.True(DateTime.UtcNow - signalled < TimeSpan.FromSeconds(5), $"took {DateTime.UtcNow - signalled}");
        Assert.Contains("Stopped", cli.Stdout, StringComparison.Ordinal);
        Assert.NotEqual(refresh, (await _h.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Fact]
    public async Task NoCommand_PrintsUsageAndExitsTwo()
    {
        var (code, _, stderr) = await CliProcess.RunAsync([], _h.Settings);

        Assert.Equal(2, code);
        Assert.Contains("Usage: tokenrefresh", stderr, StringComparison.Ordinal);
    }
}
