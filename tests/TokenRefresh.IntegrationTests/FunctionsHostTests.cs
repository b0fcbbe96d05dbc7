using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Google.Protobuf.WellKnownTypes;
using TokenRefresh.Functions;
using TokenRefresh.IntegrationTests.FunctionsHost;
using TokenRefresh.IntegrationTests.FunctionsHost.Rpc;
using TokenRefresh.IntegrationTests.Infrastructure;
using Xunit.Abstractions;
using Kind = TokenRefresh.IntegrationTests.FunctionsHost.Rpc.StreamingMessage.ContentOneofCase;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// The Function app as Azure runs it: published as the Dockerfile does, started as a process by a host stand-in
/// that speaks the Functions host-worker protocol, loaded and invoked through its timer trigger.
/// </summary>
public sealed class FunctionsHostTests(ITestOutputHelper output) : HarnessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string AppDirectory => PublishedApps.FunctionApp;

    private Dictionary<string, string?> AppSettings() => new(H.Settings) { ["REFRESH_SCHEDULE"] = "0 */3 * * * *" };

    [Theory]
    [InlineData(WorkerArguments.FunctionsPrefixed)]
    [InlineData(WorkerArguments.Both)]
    public async Task Worker_StartedAsTheHostStartsIt_ReportsTheTimerFunctionWithItsRetryAndStopsOnTerminate(WorkerArguments style)
    {
        await using var host = await HostStandIn.StartAsync(AppDirectory, AppSettings(), style);

        var function = await host.StartAndLoadAsync();

        Assert.Equal("RefreshTokens", function.Name);
        Assert.Equal("TokenRefresh.Functions.dll", function.ScriptFile);
        Assert.Equal("TokenRefresh.Functions.RefreshTokensFunction.RunAsync", function.EntryPoint);
        using var binding = JsonDocument.Parse(Assert.Single(function.RawBindings));
        Assert.Equal("timer", binding.RootElement.GetProperty("name").GetString());
        Assert.Equal("timerTrigger", binding.RootElement.GetProperty("type").GetString());
        Assert.Equal("In", binding.RootElement.GetProperty("direction").GetString());
        Assert.Equal("%REFRESH_SCHEDULE%", binding.RootElement.GetProperty("schedule").GetString());
        Assert.Equal(RpcRetryOptions.Types.RetryStrategy.FixedDelay, function.RetryOptions.RetryStrategy);
        Assert.Equal(2, function.RetryOptions.MaxRetryCount);
        Assert.Equal(TimeSpan.FromMinutes(1), function.RetryOptions.DelayInterval.ToTimeSpan());
        Assert.Equal(0, await host.TerminateAsync());
    }

    [Fact]
    public async Task Invocation_RealCycle_RefreshesDeactivatesSucceedsAndLogsTheSummaryToTheHost()
    {
        var secrets = new List<string> { H.Fake.Etsy.SharedSecret, H.Fake.Shopify.ApiSecret, H.Db.Password };
        var etsyUsers = new List<(Guid Id, string RefreshToken)>();
        for (var i = 0; i < 2; i++)
        {
            var refresh = H.Fake.Etsy.AddAccount(500 + i);
            var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(2), accessToken: $"etsy-access-before-{Guid.NewGuid():N}");
            etsyUsers.Add((id, refresh));
            secrets.AddRange([refresh, (await H.Db.GetEtsyUserAsync(id)).AccessToken!]);
        }

        var shops = new List<Guid>();
        foreach (var shop in new[] { "alpha.myshopify.com", "bravo.myshopify.com" })
        {
            var token = $"shpat_{Guid.NewGuid():N}";
            H.Fake.Shopify.AddStore(shop, token);
            shops.Add(await H.Db.AddShopifyStoreAsync(shop, token));
            secrets.Add(token);
        }

        H.Fake.Shopify.RevokeAccessToken("bravo.myshopify.com");
        var alphaBefore = await H.Db.GetShopifyStoreAsync(shops[0]);
        await using var host = await HostStandIn.StartAsync(AppDirectory, AppSettings(), WorkerArguments.Both);
        var function = await host.StartAndLoadAsync();
        var invoked = System.Diagnostics.Stopwatch.StartNew();

        var (invocationId, response) = await host.InvokeAsync(function);

        invoked.Stop();

        Assert.True(response.Result.Status == StatusResult.Types.Status.Success, response.Result.ToString());
        foreach (var (id, refresh) in etsyUsers)
        {
            var issued = H.Fake.Etsy.IssuedFor(refresh) ?? throw new InvalidOperationException("Etsy was not called for a due user");
            var row = await H.Db.GetEtsyUserAsync(id);
            Assert.Equal(issued.RefreshToken, row.RefreshToken);
            Assert.Equal(issued.AccessToken, row.AccessToken);
            secrets.AddRange([issued.AccessToken, issued.RefreshToken]);
        }

        // The valid store was validated (its success recorded), asked again by the incident guard before the revoked one
        // was switched off, and left as it was.
        Assert.Equal(2, H.Fake.Shopify.GraphQlCallsFor("alpha.myshopify.com"));
        Assert.NotNull((await H.Db.GetStateAsync("shopify", shops[0]))?.LastSuccessAt);
        Assert.Equal(alphaBefore, await H.Db.GetShopifyStoreAsync(shops[0]));
        Assert.False((await H.Db.GetShopifyStoreAsync(shops[1])).IsActive);

        // What the host receives for this invocation: the summary line, and the cycle's counts by name.
        var logs = host.Logs.Where(l => l.InvocationId == invocationId).ToList();
        var summary = Assert.Single(logs, l => l.EventId == "CycleCompleted");
        // Each account's success is Debug in the Function app (LOG_ACCOUNT_SUCCESS), below host.json's Information; a deactivation stays.
        Assert.Equal([RpcLog.Types.Level.Debug, RpcLog.Types.Level.Debug, RpcLog.Types.Level.Debug],
            logs.Where(l => l.EventId == "AccountSucceeded").Select(l => l.Level));
        Assert.Single(logs, l => l.EventId == "AccountDeactivated");
        Assert.Equal("TokenRefresh.RefreshCycle", summary.Category);
        Assert.Equal(RpcLog.Types.Level.Information, summary.Level);
        Assert.Matches(@"^Refresh cycle completed in \d+ ms\. Etsy: 2/2 refreshed, 0 failed; Shopify: 1/2 validated, 1 deactivated, 0 failed$", summary.Message);
        var metric = Assert.Single(logs, l => l.LogCategory == RpcLog.Types.RpcLogCategory.CustomMetric);
        Assert.Equal(RefreshTokensFunction.CycleMetric, metric.PropertiesMap["Name"].String);
        // The cycle's time in ms, the summary line's own, and within what the invocation took as the host saw it.
        Assert.Equal(double.Parse(System.Text.RegularExpressions.Regex.Match(summary.Message, @"in (\d+) ms").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
            metric.PropertiesMap["Value"].Double);
        Assert.InRange(metric.PropertiesMap["Value"].Double, 1, invoked.ElapsedMilliseconds);
        Assert.Equal("2", metric.PropertiesMap["EtsyRefreshed"].Json);
        Assert.Equal("1", metric.PropertiesMap["ShopifyValidated"].Json);
        Assert.Equal("1", metric.PropertiesMap["ShopifyDeactivated"].Json);
        Assert.Equal("0", metric.PropertiesMap["Failed"].Json);
        output.WriteLine("The invocation as the host received it:");
        foreach (var log in logs)
        {
            output.WriteLine(log.LogCategory == RpcLog.Types.RpcLogCategory.CustomMetric
                ? $"  [Metric] {log.PropertiesMap}"
                : $"  [{log.Level}] {log.Category} {log.EventId}: {log.Message}");
        }

        Assert.Equal(0, await host.TerminateAsync());
        host.AssertNoSecret(secrets);
        // As in production: TLS at the platforms' own names, each store at its own host, nothing else.
        Assert.Equal(["alpha.myshopify.com:443", "api.etsy.com:443", "bravo.myshopify.com:443"], H.Proxy.Connections.Distinct().Order());
    }

    [Fact]
    public async Task Invocation_WithApplicationInsights_SendsSummaryAndFailuresUnsampled_NoDependencies_OneRoleName()
    {
        var secrets = new List<string> { H.Fake.Etsy.SharedSecret, H.Fake.Shopify.ApiSecret, H.Db.Password };
        var (refresh, revoked, unknown) = await Chains.FineAndRevokedUsersAsync(H, 700);
        var token = $"shpat_{Guid.NewGuid():N}";
        H.Fake.Shopify.AddStore("charlie.myshopify.com", token);
        await H.Db.AddShopifyStoreAsync("charlie.myshopify.com", token);
        secrets.AddRange([refresh, unknown, token]);

        await using var ingestion = await FakeIngestion.StartAsync();
        var settings = AppSettings();
        settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = ingestion.ConnectionString;
        settings["WEBSITE_SITE_NAME"] = "tokenrefresh-test-app";
        // A name of its own, so that the traces carry it only through the service's initializer (the Functions
        // package names them after WEBSITE_SITE_NAME by itself).
        settings["OTEL_SERVICE_NAME"] = "tokenrefresh-role";
        // As shipped: LOG_LEVEL at its default (the harness's own is DEBUG).
        settings.Remove("LOG_LEVEL");
        await using var host = await HostStandIn.StartAsync(AppDirectory, settings, WorkerArguments.Both);
        var function = await host.StartAndLoadAsync();
        var (_, response) = await host.InvokeAsync(function);
        Assert.True(response.Result.Status == StatusResult.Types.Status.Success, response.Result.ToString());
        var issued = H.Fake.Etsy.IssuedFor(refresh)!.Value;
        secrets.AddRange([issued.AccessToken, issued.RefreshToken]);
        // A graceful stop flushes both the SDK's channel and the metric exporter.
        Assert.Equal(0, await host.TerminateAsync());

        var summary = await ingestion.WaitForAsync(e => Message(e)?.StartsWith("Refresh cycle completed", StringComparison.Ordinal) == true, Timeout);
        var metric = await ingestion.WaitForAsync(e => BaseType(e) == "MetricData", Timeout);
        var traces = ingestion.Envelopes.Where(e => BaseType(e) == "MessageData").ToList();
        Assert.Equal("CycleCompleted", Property(summary, "EventName"));
        Assert.Equal("Warning", summary.GetProperty("data").GetProperty("baseData").GetProperty("severityLevel").GetString());
        Assert.Equal("1", Property(summary, "EtsyRefreshed"));
        // The failure is a trace of its own; each success is not (Debug in the Function app).
        Assert.Contains(traces, e => Property(e, "EventName") == "AccountFailed" && Message(e)!.Contains(revoked.ToString(), StringComparison.Ordinal));
        Assert.DoesNotContain(traces, e => Property(e, "EventName") == "AccountSucceeded");
        // No platform or database call as a dependency: the one left is the worker's own span of the invocation.
        var dependency = Assert.Single(ingestion.Envelopes, e => BaseType(e) == "RemoteDependencyData").GetProperty("data").GetProperty("baseData");
        Assert.Equal(("InProc", "Invoke"), (dependency.GetProperty("type").GetString(), dependency.GetProperty("name").GetString()));
        // One name for traces and metrics.
        Assert.All(traces.Append(metric), e => Assert.Equal("tokenrefresh-role", e.GetProperty("tags").GetProperty("ai.cloud.role").GetString()));
        Assert.Contains(ingestion.Envelopes, e => BaseType(e) == "MetricData" &&
            e.GetProperty("data").GetProperty("baseData").GetProperty("metrics")[0].GetProperty("name").GetString() == "tokenrefresh.accounts");
        output.WriteLine($"{ingestion.Envelopes.Count} envelopes: " + string.Join(", ", ingestion.Envelopes.GroupBy(BaseType).Select(g => $"{g.Key} {g.Count()} ({g.Sum(e => e.GetRawText().Length) / g.Count()} bytes each)")));
        foreach (var trace in traces)
        {
            output.WriteLine($"  [{trace.GetProperty("data").GetProperty("baseData").GetProperty("severityLevel").GetString()}] {Property(trace, "EventName")}: {trace.GetRawText().Length} bytes: {Message(trace)![..Math.Min(90, Message(trace)!.Length)]}");
        }

        var everything = string.Join('\n', ingestion.Envelopes.Select(e => e.GetRawText()));
        foreach (var secret in secrets.Distinct())
        {
            Assert.False(everything.Contains(secret, StringComparison.Ordinal), $"a secret of length {secret.Length} reached Application Insights");
        }
    }

    [Xunit.Fact]
    public void WorkerTelemetry_NoSamplingProcessor_TheRoleName()
    {
        // What the worker's Program.cs wires, against the SDK's defaults (which sample), so the check can fail. (The
        // dependency module is registered either way, and left uninitialised when off; the ingestion test above shows
        // that no platform call arrives as a dependency.)
        static IServiceProvider Wire(Action<Microsoft.Extensions.Hosting.IHostApplicationBuilder> wire)
        {
            var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new());
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "InstrumentationKey=00000000-0000-4000-8000-000000000001;IngestionEndpoint=http://127.0.0.1:9/",
                ["OTEL_SERVICE_NAME"] = "tokenrefresh-role",
            });
            wire(builder);
            return builder.Services.BuildServiceProvider();
        }

        static (List<string> Processors, List<object> Initializers) Look(IServiceProvider services)
        {
            var configuration = services.GetRequiredService<Microsoft.ApplicationInsights.Extensibility.TelemetryConfiguration>();
            return (configuration.DefaultTelemetrySink.TelemetryProcessors.Select(p => p.GetType().Name).ToList(), [.. configuration.TelemetryInitializers]);
        }

        var defaults = Look(Wire(b => b.Services.AddApplicationInsightsTelemetryWorkerService()));
        var ours = Look(Wire(WorkerTelemetry.Add));

        Assert.Contains("AdaptiveSamplingTelemetryProcessor", defaults.Processors);
        Assert.DoesNotContain(ours.Processors, p => p.Contains("Sampling", StringComparison.Ordinal));
        Assert.Equal("tokenrefresh-role", Assert.Single(ours.Initializers.OfType<WorkerTelemetry.RoleName>()).Name);
    }

    private static string? BaseType(JsonElement envelope) =>
        envelope.TryGetProperty("data", out var data) && data.TryGetProperty("baseType", out var type) ? type.GetString() : null;

    private static string? Message(JsonElement envelope) =>
        BaseType(envelope) == "MessageData" ? envelope.GetProperty("data").GetProperty("baseData").GetProperty("message").GetString() : null;

    private static string? Property(JsonElement envelope, string name) =>
        envelope.GetProperty("data").GetProperty("baseData").TryGetProperty("properties", out var properties) &&
        properties.TryGetProperty(name, out var value) ? value.GetString() : null;

    [Fact]
    public async Task Invocation_DatabaseUnreachable_FailsWithTheCycleErrorSoTheHostRetries()
    {
        var settings = AppSettings();
        settings["DATABASE_URL"] = "postgresql://nobody:db-password-never-logged@127.0.0.1:1/none?connect_timeout=2";
        await using var host = await HostStandIn.StartAsync(AppDirectory, settings, WorkerArguments.Both);
        var function = await host.StartAndLoadAsync();

        var (invocationId, response) = await host.InvokeAsync(function);

        Assert.Equal(StatusResult.Types.Status.Failure, response.Result.Status);
        Assert.StartsWith("The refresh cycle failed: ", response.Result.Exception.Message, StringComparison.Ordinal);
        Assert.Contains(host.Logs, l => l.InvocationId == invocationId && l.EventId == "CycleCompleted" && l.Level == RpcLog.Types.Level.Error);
        // The retry the host applies to a failed invocation: reported at indexing, fixed 60 s, twice.
        Assert.Equal(2, function.RetryOptions.MaxRetryCount);
        Assert.Equal(0, await host.TerminateAsync());
        host.AssertNoSecret(["db-password-never-logged", H.Fake.Etsy.SharedSecret, H.Fake.Shopify.ApiSecret]);
    }

    [Theory]
    [InlineData("every three minutes", null)]
    [InlineData("0 */3 * * * *", "5")]
    public async Task Worker_BadSetting_StopsAtStartWithTheCliOneLine(string schedule, string? intervalMinutes)
    {
        var settings = AppSettings();
        settings["REFRESH_SCHEDULE"] = schedule;
        settings["REFRESH_INTERVAL_MINUTES"] = intervalMinutes;
        var (cliCode, _, cliStderr) = await CliProcess.RunAsync(["once"], settings);
        var cliLine = Assert.Single(cliStderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Equal(2, cliCode);
        Assert.StartsWith("Configuration error: ", cliLine, StringComparison.Ordinal);
        Assert.Contains("REFRESH_SCHEDULE", cliLine, StringComparison.Ordinal);

        await using var host = await HostStandIn.StartAsync(AppDirectory, settings, WorkerArguments.Both);
        var code = await host.WaitForExitAsync(Timeout);

        Assert.Equal(2, code);
        Assert.Equal(cliLine, Assert.Single(host.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
        Assert.Empty(host.Received);
    }

    [Fact]
    public async Task Worker_OriginalIntervalSettingWithoutASchedule_StopsSayingWhatToSet()
    {
        var settings = AppSettings();
        settings.Remove("REFRESH_SCHEDULE");
        settings["REFRESH_INTERVAL_MINUTES"] = "15";

        await using var host = await HostStandIn.StartAsync(AppDirectory, settings, WorkerArguments.Both);

        Assert.Equal(2, await host.WaitForExitAsync(Timeout));
        Assert.Equal(
            "Configuration error: REFRESH_INTERVAL_MINUTES=15 is not read by the Functions host, which runs the timer from REFRESH_SCHEDULE: set REFRESH_SCHEDULE='0 */15 * * * *' instead.",
            host.Output.Trim());
    }
}
