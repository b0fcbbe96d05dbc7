using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

public sealed class CliTests : HarnessTests
{
    private const int SigTerm = 15;
    private const int SigInt = 2;


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
        // As in production: TLS at the platforms' own names (the store at its own host), nothing else; all closed at exit.
        Assert.Equal(["a.myshopify.com:443", "api.etsy.com:443"], H.Proxy.Connections.Distinct().Order());
        await WaitUntilClosedAsync();
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
            // The service's settings in .env; the way to the platforms (the proxy, the test CA) is the machine's, in its environment.
            var network = H.Proxy.Environment();
            await File.WriteAllLinesAsync(Path.Combine(dir.FullName, ".env"),
                H.Settings.Where(kv => !network.ContainsKey(kv.Key)).Select(kv => $"{kv.Key}=\"{kv.Value}\"").Append("LOG_LEVEL=ERROR"));
            var refresh = H.Fake.Etsy.AddAccount(1);
            var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));

            var (code, stdout, _) = await CliProcess.RunAsync(["once"], new Dictionary<string, string?>(network) { ["LOG_LEVEL"] = "INFO" }, dir.FullName);

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
            // Only the way to the fake platforms comes from the environment (the proxy and the test CA), as a network would.
            var environment = new Dictionary<string, string?>(H.Proxy.Environment());
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

    [Theory]
    [InlineData(SigTerm)]
    [InlineData(SigInt)]
    public async Task Run_SigtermOrSigint_StopsPromptlyAfterTheCycleWithExitZero(int signal)
    {
        var refresh = H.Fake.Etsy.AddAccount(1);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Settings["REFRESH_SCHEDULE"] = "0 0 0 1 1 *"; // next run a long way off: the process must be waiting
        using var cli = CliProcess.Start(["run"], H.Settings);
        await cli.WaitForOutputAsync("Refresh cycle completed", TimeSpan.FromSeconds(60));

        var signalled = DateTime.UtcNow;
        cli.Signal(signal);
        var code = await cli.WaitForExitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(0, code);
        Assert.True(DateTime.UtcNow - signalled < TimeSpan.FromSeconds(5), $"took {DateTime.UtcNow - signalled}");
        Assert.Contains("Stopped", cli.Stdout, StringComparison.Ordinal);
        Assert.NotEqual(refresh, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    [Fact]
    public async Task Run_OfTheImage_StartsItselfAgain_InTheSameProcess_WithTieredCompilationOn()
    {
        H.Settings["REFRESH_SCHEDULE"] = "0 0 0 1 1 *";
        using var cli = CliProcess.Start(["run"], H.Settings, program: PublishedApps.Cli);
        await cli.WaitForOutputAsync("Refresh cycle completed", TimeSpan.FromSeconds(60));

        // The process the test started (its id, its output) is the one running the cycles, now with tiering on.
        var environment = (await File.ReadAllTextAsync($"/proc/{cli.Id}/environ")).Split('\0');
        var commandLine = (await File.ReadAllTextAsync($"/proc/{cli.Id}/cmdline")).Split('\0', StringSplitOptions.RemoveEmptyEntries);
        cli.Signal(SigTerm);

        Assert.Equal(0, await cli.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("DOTNET_TieredCompilation=1", environment);
        Assert.Equal([PublishedApps.Cli, "run"], commandLine);
        Assert.Single(cli.Stdout.Split('\n'), l => l.Contains("Running on schedule", StringComparison.Ordinal));
    }

    [Fact]
    public async Task NoCommand_SaysSoAndWhereHelpIs_ExitsTwo()
    {
        var (code, stdout, stderr) = await CliProcess.RunAsync([], H.Settings);

        Assert.Equal((2, ""), (code, stdout.Trim()));
        Assert.Equal(["Required command was not provided.", "Run 'tokenrefresh --help' for usage."], Lines(stderr));
    }

    public static TheoryData<string> CommandPaths => ["", "once", "run", "refresh", "migrate", "status", "health", "shopify", "shopify migrate-expiring"];

    [Theory]
    [MemberData(nameof(CommandPaths))]
    public async Task Help_EveryCommand_PrintsItsOwnUsageWithoutSettings_ExitsZero(string path)
    {
        string[] command = path.Length == 0 ? [] : path.Split(' ');
        // No setting at all: help needs none.
        var (code, stdout, stderr) = await CliProcess.RunAsync([.. command, "--help"], new Dictionary<string, string?>());
        var (helpCode, helpStdout, _) = await CliProcess.RunAsync(["help", .. command], new Dictionary<string, string?>());

        Assert.Equal((0, ""), (code, stderr.Trim()));
        Assert.Contains($"Usage:\n  tokenrefresh {path}".TrimEnd() + " ", stdout.Replace("\r", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Equal((0, stdout), (helpCode, helpStdout));
    }

    [Fact]
    public async Task Version_PrintsTheVersion_ExitsZero()
    {
        var (code, stdout, _) = await CliProcess.RunAsync(["--version"], new Dictionary<string, string?>());

        Assert.Equal(0, code);
        Assert.Matches(@"^\d+\.\d+\.\d+", stdout.Trim());
    }

    [Theory]
    [InlineData("bogus", "Unrecognized command or argument 'bogus'.", "tokenrefresh")]
    [InlineData("refresh", "Give exactly one of --etsy-user ID, --shop DOMAIN or --ebay-user ID.", "tokenrefresh refresh")]
    [InlineData("refresh --shop a.myshopify.com --etsy-user 1", "Give exactly one of --etsy-user ID, --shop DOMAIN or --ebay-user ID.", "tokenrefresh refresh")]
    [InlineData("refresh --shop", "Required argument missing for option: '--shop'.", "tokenrefresh refresh")]
    [InlineData("status --jsn", "Unrecognized command or argument '--jsn'.", "tokenrefresh status")]
    [InlineData("once --metrics extra", "Unrecognized command or argument 'extra'.", "tokenrefresh once")]
    [InlineData("shopify migrate-expiring --dry-run", "Give exactly one of --shop DOMAIN or --all.", "tokenrefresh shopify migrate-expiring")]
    [InlineData("shopify migrate-expiring --yes --all --dry-run", "Give at most one of --dry-run or --yes.", "tokenrefresh shopify migrate-expiring")]
    public async Task UsageError_ExitsTwoWithTheReasonAndWhereHelpIs_BeforeAnySetting(string args, string reason, string command)
    {
        // The usage is judged before the settings: the settings here would fail too.
        var (code, stdout, stderr) = await CliProcess.RunAsync(args.Split(' '), new Dictionary<string, string?>());

        Assert.Equal((2, ""), (code, stdout.Trim()));
        // Each error on a line (an unknown word alone may also leave the command missing), then where help is.
        Assert.Contains(reason, Lines(stderr));
        Assert.Equal($"Run '{command} --help' for usage.", Lines(stderr)[^1]);
    }

    [Theory]
    [InlineData("once")]
    [InlineData("once --metrics")]
    [InlineData("run")]
    [InlineData("refresh --shop a.myshopify.com")]
    [InlineData("refresh --etsy-user 1")]
    [InlineData("migrate")]
    [InlineData("status")]
    [InlineData("status --json")]
    [InlineData("shopify migrate-expiring --all --dry-run")]
    public async Task ConfigurationError_EveryCommand_ExitsTwoWithTheOneLine(string args)
    {
        var settings = new Dictionary<string, string?>(H.Settings) { ["DATABASE_URL"] = null };

        var (code, stdout, stderr) = await CliProcess.RunAsync(args.Split(' '), settings);

        Assert.Equal((2, ""), (code, stdout.Trim()));
        Assert.Equal(["Configuration error: DATABASE_URL is required but not set."], Lines(stderr));
    }

    [Fact]
    public async Task OptionsInAnyOrder_TheSameCommand()
    {
        await H.Db.AddExpiringColumnsAsync();
        var token = $"shpat_{Guid.NewGuid():N}";
        H.Fake.Shopify.AddStore("order.myshopify.com", token);
        await H.Db.AddShopifyStoreAsync("order.myshopify.com", token);

        var one = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "order.myshopify.com", "--dry-run"], H.Settings);
        var other = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--dry-run", "--shop", "order.myshopify.com"], H.Settings);
        var helpFirst = await CliProcess.RunAsync(["status", "--json", "--help"], H.Settings);

        Assert.True(one.ExitCode == 0, one.Stderr);
        Assert.Contains("would migrate", one.Stdout, StringComparison.Ordinal);
        Assert.Equal((one.ExitCode, one.Stdout), (other.ExitCode, other.Stdout));
        Assert.Equal(0, helpFirst.ExitCode);
        Assert.Contains("tokenrefresh status [options]", helpFirst.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_Sigint_TheCallInFlightFinishesAndIsStored_ExitZero()
    {
        var refresh = H.Fake.Etsy.AddAccount(77);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        // Longer than System.CommandLine's own 2 s termination timeout, which the CLI turns off.
        H.Fake.Latency = TimeSpan.FromSeconds(4);
        H.Settings["HTTP_TIMEOUT_SECONDS"] = "20";
        using var cli = CliProcess.Start(["once"], H.Settings);
        await cli.WaitForOutputAsync("sending the refresh request", TimeSpan.FromSeconds(60));

        cli.Signal(SigInt);
        var code = await cli.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.True(code == 0, $"exit {code}: {cli.Stdout}");
        var issued = H.Fake.Etsy.IssuedFor(refresh) ?? throw new InvalidOperationException("the request in flight was not answered");
        Assert.Equal(issued.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
        Assert.Contains("Etsy: 1/1 refreshed", cli.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_HeartbeatAsTheImageConfiguresIt_TheImagesHealthcheckPassesWhileItRuns()
    {
        // The CLI image's own HEARTBEAT_FILE and HEALTHCHECK command, as the Dockerfile gives them.
        var dockerfile = File.ReadAllText(Repo.File("Dockerfile"));
        var heartbeat = System.Text.RegularExpressions.Regex.Match(dockerfile, @"^ENV HEARTBEAT_FILE=(\S+)$", System.Text.RegularExpressions.RegexOptions.Multiline).Groups[1].Value;
        var check = System.Text.RegularExpressions.Regex.Match(dockerfile, @"^HEALTHCHECK .* CMD (\[.*\])$", System.Text.RegularExpressions.RegexOptions.Multiline).Groups[1].Value;
        var command = System.Text.Json.JsonSerializer.Deserialize<string[]>(check)!;
        Assert.Equal("tokenrefresh", command[0]);
        var refresh = H.Fake.Etsy.AddAccount(78);
        await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));
        H.Settings["HEARTBEAT_FILE"] = heartbeat;
        H.Settings["REFRESH_SCHEDULE"] = "0 0 0 1 1 *"; // the next cycle a long way off
        File.Delete(heartbeat);
        try
        {
            var before = await CliProcess.RunAsync(command[1..], H.Settings);
            using var cli = CliProcess.Start(["run"], H.Settings);
            // The heartbeat is written before the next cycle is announced.
            await cli.WaitForOutputAsync("Next cycle at", TimeSpan.FromSeconds(60));
            var during = await CliProcess.RunAsync(command[1..], H.Settings);
            cli.Signal(SigTerm);
            Assert.Equal(0, await cli.WaitForExitAsync(TimeSpan.FromSeconds(30)));

            Assert.Equal(1, before.ExitCode);
            Assert.StartsWith("unhealthy: no heartbeat at", before.Stderr, StringComparison.Ordinal);
            Assert.True(during.ExitCode == 0, during.Stderr);
            // The heartbeat carries the summary the cycle logged, and that cycle refreshed the user; a failure shows the run's log.
            var logged = System.Text.RegularExpressions.Regex.Match(cli.Stdout, @"Refresh cycle completed in \d+ ms\. (Etsy: .*)$", System.Text.RegularExpressions.RegexOptions.Multiline);
            Assert.True(logged.Success && logged.Groups[1].Value.StartsWith("Etsy: 1/1 refreshed", StringComparison.Ordinal), cli.Stdout);
            Assert.True(during.Stdout.Contains("last cycle: " + logged.Groups[1].Value.TrimEnd(), StringComparison.Ordinal), $"health: {during.Stdout}\nrun: {cli.Stdout}");

            // A heartbeat whose next cycle should long have ended.
            File.WriteAllText(heartbeat, $"{DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds()}\nstale\n");
            var stale = await CliProcess.RunAsync(command[1..], H.Settings);
            Assert.Equal(1, stale.ExitCode);
            Assert.StartsWith("unhealthy: no cycle has ended since", stale.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(heartbeat);
        }
    }

    [Fact]
    public async Task Health_WithoutHeartbeatFile_ExitsTwoNamingTheSetting()
    {
        var (code, _, stderr) = await CliProcess.RunAsync(["health"], new Dictionary<string, string?>());

        Assert.Equal(2, code);
        Assert.Equal(["Configuration error: HEARTBEAT_FILE is not set: `run` writes no heartbeat to check."], Lines(stderr));
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    // The process has exited; the proxy sees its side of each tunnel end a moment later.
    private Task WaitUntilClosedAsync() => Poll.UntilAsync(() => H.Proxy.OpenConnections.Count == 0, TimeSpan.FromSeconds(10));
}
