// One refresh cycle over N due Etsy users and N active Shopify stores, against the fake platforms (a process of their
// own, so that only the service's CPU is counted) with a set latency, through the production wiring (AddTokenRefresh).
// Driven by ./scripts/bench.sh.
//   dotnet TokenRefresh.Benchmarks.dll ADMIN_URL ETSY_N SHOPIFY_N LATENCY_MS CONCURRENCY
//     [--cli] [--etsy-rate R] [--budget S] [--round-trips] [--pooler-port PORT] [--url-query QUERY] [--floor]
//   --cli: the cycle runs as the CLI does, `tokenrefresh once` as a process of its own, startup included;
//   --cli-dll: the same, with that build of the CLI (a .dll, or a program: the image's, from scripts/check-images.sh) instead of the project's;
//   --etsy-rate: ETSY_MAX_REQUESTS_PER_SECOND (by default lifted to 100,000: a limit a deployment sets for its app);
//   --budget: CYCLE_BUDGET_SECONDS (by default an hour);
//   --pooler-port: the service reaches the database through a pooler (scripts/pgbouncer.sh) listening there;
//   --url-query: appended to DATABASE_URL, e.g. max_auto_prepare=32;
//   --run CYCLES [--every S]: `tokenrefresh run` on a schedule of every S seconds (20), its CPU per platform call over
//   CYCLES cycles after its first two, every Etsy user made due again after each;
//   --floor: instead of the service, the floor (tests/TokenRefresh.Floor): only the platform calls and the UPDATE of each
//   refreshed row, in plain .NET, as a process of its own; --floor-exe: the same, with that build of it (compiled natively).
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Dapper;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh;
using TokenRefresh.Benchmarks;
using TokenRefresh.Settings;

// dotnet TokenRefresh.Benchmarks.dll ADMIN_URL --migrate-expiring STORES LATENCY_MS CONCURRENCY: the migration to expiring tokens.
if (args is [var migrateUrl, "--migrate-expiring", var stores, var migrateLatency, var migrateConcurrency])
{
    return await MigrateBench.RunAsync(migrateUrl, int.Parse(stores, CultureInfo.InvariantCulture), int.Parse(migrateLatency, CultureInfo.InvariantCulture),
        int.Parse(migrateConcurrency, CultureInfo.InvariantCulture));
}

// dotnet TokenRefresh.Benchmarks.dll ADMIN_URL --scale PG_LOG STORES ETSY [--indexes]: the original's tables at scale.
if (args is [var scaleUrl, "--scale", var pgLog, var scaleStores, var scaleEtsy, .. var scaleRest])
{
    return await ScaleBench.RunAsync(scaleUrl, pgLog, int.Parse(scaleStores, CultureInfo.InvariantCulture), int.Parse(scaleEtsy, CultureInfo.InvariantCulture),
        scaleRest.Contains("--indexes"));
}

if (args.Length < 5)
{
    Console.Error.WriteLine("usage: ADMIN_URL ETSY_N SHOPIFY_N LATENCY_MS CONCURRENCY [--cli] [--etsy-rate R] [--budget S] [--round-trips] [--pooler-port P] [--url-query Q] [--floor] [--floor-exe PATH]");
    return 2;
}

var adminUrl = args[0];
var etsyCount = int.Parse(args[1], CultureInfo.InvariantCulture);
var shopifyCount = int.Parse(args[2], CultureInfo.InvariantCulture);
var latency = TimeSpan.FromMilliseconds(int.Parse(args[3], CultureInfo.InvariantCulture));
var concurrency = int.Parse(args[4], CultureInfo.InvariantCulture);
var countRoundTrips = args.Contains("--round-trips");
var asFloor = args.Contains("--floor") || args.Contains("--floor-exe");
var asCli = args.Contains("--cli") || args.Contains("--cli-dll") || asFloor;
string? Option(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
var poolerPort = Option("--pooler-port") is { } p ? int.Parse(p, CultureInfo.InvariantCulture) : (int?)null;
var urlQuery = Option("--url-query");
var etsyRate = int.Parse(Option("--etsy-rate") ?? "100000", CultureInfo.InvariantCulture);
var budget = int.Parse(Option("--budget") ?? "3600", CultureInfo.InvariantCulture);

// A fresh database with the main application's tables and the service's own.
var admin = new NpgsqlConnectionStringBuilder(TokenRefreshBench.Connection(adminUrl));
var database = $"bench_{Guid.NewGuid():N}";
await using (var c = new NpgsqlConnection(admin.ConnectionString))
{
    await c.ExecuteAsync($"CREATE DATABASE {database}");
}

admin.Database = database;
await using (var dataSource = NpgsqlDataSource.Create(admin.ConnectionString))
{
    await using var c = await dataSource.OpenConnectionAsync();
    await c.ExecuteAsync(await File.ReadAllTextAsync(Path.Combine(TokenRefreshBench.Root, "scripts", "sql", "app-tables.sql")));
    await TokenRefresh.Persistence.Migrator.ApplyAsync(dataSource);
    await c.ExecuteAsync("""
        INSERT INTO etsy_users (access_token, refresh_token, token_expires_at)
        SELECT 'at-' || i, i || '.rt-bench-' || i, (now() AT TIME ZONE 'UTC') - (i % 600) * interval '1 second' FROM generate_series(1, @etsyCount) i;
        INSERT INTO shopify_stores (shop_domain, access_token)
        SELECT 'shop' || i || '.myshopify.com', 'shpat_bench_' || i FROM generate_series(1, @shopifyCount) i;
        ANALYZE;
        """, new { etsyCount, shopifyCount }, commandTimeout: 600);
}

// The fake platforms in a process of their own, seeded with the same accounts.
var seed = Path.Combine(Path.GetTempPath(), $"tokenrefresh-bench-seed-{Guid.NewGuid():N}.json");
await File.WriteAllTextAsync(seed, JsonSerializer.Serialize(new
{
    etsy = Enumerable.Range(1, etsyCount).Select(i => new { refreshToken = $"{i}.rt-bench-{i}" }),
    shopify = Enumerable.Range(1, shopifyCount).Select(i => new { shop = $"shop{i}.myshopify.com", accessToken = $"shpat_bench_{i}" }),
}));
using var fake = Child.Start(Path.Combine(TokenRefreshBench.Root, "tests", "TokenRefresh.FakePlatforms", "bin", "Release", "net10.0", "TokenRefresh.FakePlatforms.dll"),
    ["--urls", "http://127.0.0.1:0", "--latency-ms", ((int)latency.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), "--seed", seed], new Dictionary<string, string?>());
var fakeUrl = (await fake.WaitForLineAsync("Fake platforms listening on ", TimeSpan.FromMinutes(2)))["Fake platforms listening on ".Length..].Trim();
File.Delete(seed);

await using var counter = countRoundTrips ? new RoundTripCounter(poolerPort ?? admin.Port) : null;
var serviceUrl = new UriBuilder(adminUrl) { Path = "/" + database, Port = counter?.Port ?? poolerPort ?? admin.Port, Query = urlQuery ?? "" }.Uri.AbsoluteUri;
var settings = new Dictionary<string, string?>
{
    ["DATABASE_URL"] = serviceUrl,
    ["ETSY_CLIENT_ID"] = "fake-etsy-keystring",
    ["ETSY_CLIENT_SECRET"] = "fake-etsy-shared-secret",
    ["SHOPIFY_API_KEY"] = "fake-shopify-api-key",
    ["SHOPIFY_API_SECRET"] = "fake-shopify-api-secret",
    ["ETSY_API_BASE_URL"] = fakeUrl,
    ["SHOPIFY_API_BASE_URL"] = fakeUrl + "/shopify/{shop}",
    ["REFRESH_MAX_CONCURRENCY"] = concurrency.ToString(CultureInfo.InvariantCulture),
    ["ETSY_MAX_REQUESTS_PER_SECOND"] = etsyRate.ToString(CultureInfo.InvariantCulture),
    ["CYCLE_BUDGET_SECONDS"] = budget.ToString(CultureInfo.InvariantCulture),
    ["LOG_LEVEL"] = "INFO",
};

if (Option("--run") is { } runCycles)
{
    // `run` in its steady state, instead of one cycle (docs/performance.md).
    Console.WriteLine(await RunSteady.MeasureAsync(Option("--cli-dll") ?? Path.Combine(TokenRefreshBench.Root, "src", "TokenRefresh.Cli", "bin", "Release", "net10.0", "TokenRefresh.Cli.dll"),
        settings, admin.ConnectionString, fakeUrl, int.Parse(runCycles, CultureInfo.InvariantCulture), int.Parse(Option("--every") ?? "20", CultureInfo.InvariantCulture)));
    await DropAsync();
    return 0;
}

var roundTripsBefore = counter?.RoundTrips ?? 0;
TimeSpan wall, cpu;
long peakMemory;
string summaryText;
TimeSpan? etsyTime = null, shopifyTime = null;
var succeeded = 0;
if (asCli)
{
    // The CLI as cron or a container runs it: a process of its own, from its start to its exit.
    var before = Child.Usage();
    var clock = Stopwatch.StartNew();
    using var cli = asFloor
        ? Child.Start(Option("--floor-exe") ?? Path.Combine(TokenRefreshBench.Root, "tests", "TokenRefresh.Floor", "bin", "Release", "net10.0", "TokenRefresh.Floor.dll"),
            [fakeUrl, $"{etsyCount}", $"{shopifyCount}", $"{concurrency}"], new Dictionary<string, string?> { ["FLOOR_CONNECTION_STRING"] = DatabaseUrl.Parse(serviceUrl).ConnectionString })
        : Child.Start(Option("--cli-dll") ?? Path.Combine(TokenRefreshBench.Root, "src", "TokenRefresh.Cli", "bin", "Release", "net10.0", "TokenRefresh.Cli.dll"), ["once"], settings);
    var code = await cli.WaitForExitAsync(TimeSpan.FromHours(2));
    wall = clock.Elapsed;
    var after = Child.Usage();
    cpu = after.Cpu - before.Cpu;
    peakMemory = after.MaxRssKb / 1024;
    summaryText = cli.Output.Split('\n').LastOrDefault(l => l.Contains("Refresh cycle completed", StringComparison.Ordinal) || l.StartsWith("floor:", StringComparison.Ordinal))?.Trim() ?? $"exit {code}: {string.Join(" / ", cli.Output.Split('\n').Where(l => l.Trim().Length > 0).Where(l => !l.StartsWith("   at ", StringComparison.Ordinal)).Take(3))}";
    succeeded = code == 0 ? etsyCount + shopifyCount : 0;
}
else
{
    var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
    builder.Configuration.AddInMemoryCollection(settings);
    // Every per-account line is formatted, as in production, then dropped instead of printed.
    builder.Logging.AddProvider(new DiscardingLoggerProvider());
    builder.AddTokenRefresh();
    using var host = builder.Build();

    var process = Process.GetCurrentProcess();
    GC.Collect();
    process.Refresh();
    var cpuBefore = process.TotalProcessorTime;
    var clock = Stopwatch.StartNew();
    var summary = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
    wall = clock.Elapsed;
    process.Refresh();
    cpu = process.TotalProcessorTime - cpuBefore;
    peakMemory = process.PeakWorkingSet64 / 1024 / 1024;
    summaryText = summary.ToString();
    etsyTime = summary.Platforms.FirstOrDefault(p => p.Platform == "Etsy")?.Duration;
    shopifyTime = summary.Platforms.FirstOrDefault(p => p.Platform == "Shopify")?.Duration;
    succeeded = summary.Platforms.Sum(x => x.Succeeded);
}

var roundTrips = (counter?.RoundTrips ?? 0) - roundTripsBefore;
var accounts = etsyCount + shopifyCount;
// The bound: every account's latency, spread over the slots; and Etsy's accounts at its rate, whichever is longer.
var latencyBound = TimeSpan.FromMilliseconds(accounts * latency.TotalMilliseconds / concurrency);
var rateBound = TimeSpan.FromSeconds(etsyCount / (double)etsyRate);
var bound = latencyBound > rateBound ? latencyBound : rateBound;
string Seconds(TimeSpan? t) => t is { } x ? x.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture) + " s" : "-";
Console.WriteLine($"summary: {summaryText}");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"| {(asFloor ? (Option("--floor-exe") is null ? "floor" : "floor, native") : asCli ? "CLI `once`" : "in-process")} | {accounts:N0} ({etsyCount:N0} + {shopifyCount:N0}) | {latency.TotalMilliseconds:0} ms | {concurrency} | {etsyRate:N0}/s | " +
    $"{wall.TotalSeconds:0.00} s | {bound.TotalSeconds:0.00} s | " +
    $"{(bound > TimeSpan.Zero ? (wall / bound).ToString("0.00", CultureInfo.InvariantCulture) + "x" : "n/a")} | {Seconds(etsyTime)} | {Seconds(shopifyTime)} | " +
    $"{accounts / wall.TotalSeconds:N0} | {cpu.TotalMilliseconds / accounts:0.000} | " +
    $"{(countRoundTrips ? (roundTrips / (double)accounts).ToString("0.00", CultureInfo.InvariantCulture) : "-")} | {peakMemory} MB |"));

await DropAsync();
return succeeded == accounts || budget < 3600 ? 0 : 1;

async Task DropAsync()
{
    await using var c = new NpgsqlConnection(TokenRefreshBench.Connection(adminUrl));
    NpgsqlConnection.ClearAllPools();
    await c.ExecuteAsync($"DROP DATABASE IF EXISTS {database} WITH (FORCE)");
}

internal static class TokenRefreshBench
{
    public static string Root { get; } = FindRoot();

    public static string Connection(string url)
    {
        var b = new NpgsqlConnectionStringBuilder(DatabaseUrl.Parse(url).ConnectionString) { Pooling = false };
        return b.ConnectionString;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TokenRefresh.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("TokenRefresh.sln not found");
    }
}

/// <summary>A child process (the fakes, the CLI), its output, and the CPU and memory of the children that have exited.</summary>
internal sealed class Child : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _output = new();

    private Child(Process process) => _process = process;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static Child Start(string dll, string[] args, IReadOnlyDictionary<string, string?> environment)
    {
        // A .dll runs under dotnet; anything else (the image's native CLI) runs as itself.
        var info = dll.EndsWith(".dll", StringComparison.Ordinal) ? new ProcessStartInfo("dotnet", [dll, .. args]) : new ProcessStartInfo(dll, args);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        var process = new Process { StartInfo = info };
        var child = new Child(process);
        process.OutputDataReceived += (_, e) => { lock (child._output) { child._output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (child._output) { child._output.AppendLine(e.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public async Task<string> WaitForLineAsync(string prefix, TimeSpan timeout)
    {
        string? line = null;
        await WaitForOutputAsync(lines => (line = lines.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal))) is not null, timeout);
        return line!;
    }

    /// <summary>Waits until the process has logged <paramref name="count"/> cycles' summaries.</summary>
    public Task WaitForCyclesAsync(int count, TimeSpan timeout) =>
        WaitForOutputAsync(lines => lines.Count(l => l.Contains("Refresh cycle completed", StringComparison.Ordinal)) >= count, timeout);

    // Polls the output (it comes with no signal) until it shows what is awaited; the process ending first is a failure.
    private async Task WaitForOutputAsync(Func<string[], bool> shows, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (!shows(Output.Split('\n')))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"exited with {_process.ExitCode}: {Output}");
            }

            await Task.Delay(20, cts.Token);
        }
    }

    /// <summary>The CPU time the running process has used so far (/proc: user and system, in clock ticks of 10 ms).</summary>
    public TimeSpan Cpu()
    {
        var stat = File.ReadAllText($"/proc/{_process.Id}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return TimeSpan.FromMilliseconds((long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) * 10);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>getrusage(RUSAGE_CHILDREN): the CPU time of the children that have exited and been waited for, and the largest one's peak memory.</summary>
    public static (TimeSpan Cpu, long MaxRssKb) Usage()
    {
        if (GetRUsage(-1, out var usage) != 0)
        {
            throw new InvalidOperationException("getrusage failed");
        }

        var cpu = TimeSpan.FromSeconds(usage.UserSeconds + usage.UserMicroseconds / 1e6 + usage.SystemSeconds + usage.SystemMicroseconds / 1e6);
        return (cpu, usage.MaxRss);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RUsage
    {
        public long UserSeconds;
        public long UserMicroseconds;
        public long SystemSeconds;
        public long SystemMicroseconds;
        public long MaxRss;
        public long IxRss, IdRss, IsRss, MinFlt, MajFlt, NSwap, InBlock, OuBlock, MsgSnd, MsgRcv, NSignals, NvCsw, NivCsw;
    }

    public void Signal(int signal) => _ = Kill(_process.Id, signal);

    /// <summary>The process's peak resident memory so far (VmHWM), in kB; 0 once it has exited.</summary>
    public long PeakRssKb()
    {
        try
        {
            var line = File.ReadLines($"/proc/{_process.Id}/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [DllImport("libc", EntryPoint = "getrusage", SetLastError = true)]
    private static extern int GetRUsage(int who, out RUsage usage);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
    }
}

internal sealed class DiscardingLoggerProvider : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new Discarding();

    public void Dispose()
    {
    }

    private sealed class Discarding : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            _ = formatter(state, exception);
    }
}
