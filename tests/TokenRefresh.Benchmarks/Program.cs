// One refresh cycle over N due Etsy users and N active Shopify stores, against the fake platforms with a
// set latency, through the production wiring (AddTokenRefresh). Driven by ./scripts/bench.sh.
//   dotnet run -c Release --project tests/TokenRefresh.Benchmarks -- ADMIN_URL ETSY_N SHOPIFY_N LATENCY_MS CONCURRENCY
//     [--round-trips] [--pooler-port PORT] [--url-query QUERY]
//   --pooler-port: the service reaches the database through a pooler (scripts/pgbouncer.sh) listening there;
//   --url-query: appended to DATABASE_URL, e.g. max_auto_prepare=32.
using System.Diagnostics;
using System.Globalization;
using Dapper;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh;
using TokenRefresh.Benchmarks;
using TokenRefresh.FakePlatforms;

if (args.Length < 5)
{
    Console.Error.WriteLine("usage: ADMIN_URL ETSY_N SHOPIFY_N LATENCY_MS CONCURRENCY [--round-trips]");
    return 2;
}

var adminUrl = args[0];
var etsyCount = int.Parse(args[1], CultureInfo.InvariantCulture);
var shopifyCount = int.Parse(args[2], CultureInfo.InvariantCulture);
var latency = TimeSpan.FromMilliseconds(int.Parse(args[3], CultureInfo.InvariantCulture));
var concurrency = int.Parse(args[4], CultureInfo.InvariantCulture);
var countRoundTrips = args.Contains("--round-trips");
string? Option(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
var poolerPort = Option("--pooler-port") is { } p ? int.Parse(p, CultureInfo.InvariantCulture) : (int?)null;
var urlQuery = Option("--url-query");

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

await using var fake = await FakePlatformServer.StartAsync();
fake.Latency = latency;
for (var i = 1; i <= etsyCount; i++)
{
    fake.Etsy.AddRefreshToken($"{i}.rt-bench-{i}");
}

for (var i = 1; i <= shopifyCount; i++)
{
    fake.Shopify.AddStore($"shop{i}.myshopify.com", $"shpat_bench_{i}");
}

await using var counter = countRoundTrips ? new RoundTripCounter(poolerPort ?? admin.Port) : null;
var serviceUrl = new UriBuilder(adminUrl) { Path = "/" + database, Port = counter?.Port ?? poolerPort ?? admin.Port, Query = urlQuery ?? "" }.Uri.AbsoluteUri;

var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
{
    ["DATABASE_URL"] = serviceUrl,
    ["ETSY_CLIENT_ID"] = fake.Etsy.ClientId,
    ["ETSY_CLIENT_SECRET"] = fake.Etsy.SharedSecret,
    ["SHOPIFY_API_KEY"] = fake.Shopify.ApiKey,
    ["SHOPIFY_API_SECRET"] = fake.Shopify.ApiSecret,
    ["ETSY_API_BASE_URL"] = fake.EtsyBaseUrl,
    ["SHOPIFY_API_BASE_URL"] = fake.ShopifyBaseUrl,
    ["REFRESH_MAX_CONCURRENCY"] = concurrency.ToString(CultureInfo.InvariantCulture),
    // The benchmark measures the service, not a client-side limit or budget that a deployment sets for its app.
    ["ETSY_MAX_REQUESTS_PER_SECOND"] = "100000",
    ["CYCLE_BUDGET_SECONDS"] = "3600",
    ["LOG_LEVEL"] = "INFO",
});
// Every per-account line is formatted, as in production, then dropped instead of printed.
builder.Logging.AddProvider(new DiscardingLoggerProvider());
builder.AddTokenRefresh();
using var host = builder.Build();

var process = Process.GetCurrentProcess();
GC.Collect();
var roundTripsBefore = counter?.RoundTrips ?? 0;
process.Refresh();
var cpuBefore = process.TotalProcessorTime;
var wall = Stopwatch.StartNew();
var summary = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
wall.Stop();
process.Refresh();
var cpu = process.TotalProcessorTime - cpuBefore;
var roundTrips = (counter?.RoundTrips ?? 0) - roundTripsBefore;

var accounts = etsyCount + shopifyCount;
var bound = TimeSpan.FromMilliseconds(accounts * latency.TotalMilliseconds / concurrency);
Console.WriteLine($"summary: {summary}");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"| {accounts:N0} ({etsyCount:N0} + {shopifyCount:N0}) | {latency.TotalMilliseconds:0} ms | {concurrency} | {wall.Elapsed.TotalSeconds:0.00} s | {bound.TotalSeconds:0.00} s | " +
    $"{(bound > TimeSpan.Zero ? (wall.Elapsed / bound).ToString("0.00", CultureInfo.InvariantCulture) + "x" : "n/a")} | {accounts / wall.Elapsed.TotalSeconds:N0} | " +
    $"{cpu.TotalMilliseconds / accounts:0.000} | {(countRoundTrips ? (roundTrips / (double)accounts).ToString("0.00", CultureInfo.InvariantCulture) : "-")} | {process.PeakWorkingSet64 / 1024 / 1024} MB |"));

await using (var c = new NpgsqlConnection(TokenRefreshBench.Connection(adminUrl)))
{
    NpgsqlConnection.ClearAllPools();
    await c.ExecuteAsync($"DROP DATABASE IF EXISTS {database} WITH (FORCE)");
}

var expected = etsyCount + shopifyCount;
return summary.Platforms.Sum(p => p.Succeeded) == expected ? 0 : 1;

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
