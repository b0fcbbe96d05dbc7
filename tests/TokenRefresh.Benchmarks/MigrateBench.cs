using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dapper;
using Npgsql;
using TokenRefresh;

/// <summary>
/// `tokenrefresh shopify migrate-expiring --all --yes` over N non-expiring stores against the fake Shopify (a process of
/// its own) with a set latency, as the CLI process: 1 store in 100 loses its answer once, 1 in 100 is uninstalled. Twice,
/// each on a fresh database: once straight through, and once stopped by SIGINT at 40% and run again.
/// </summary>
internal static class MigrateBench
{
    public static async Task<int> RunAsync(string adminUrl, int stores, int latencyMs, int concurrency)
    {
        Console.WriteLine($"migrate-expiring --all --yes: {stores:N0} stores, {latencyMs} ms a call, SHOPIFY_MAX_CONCURRENCY={concurrency}; 1 in 100 answers lost once, 1 in 100 stores uninstalled");
        var straight = await RunOnceAsync(adminUrl, stores, latencyMs, concurrency, interruptAt: null);
        var resumed = await RunOnceAsync(adminUrl, stores, latencyMs, concurrency, interruptAt: 0.4);
        return straight && resumed ? 0 : 1;
    }

    private static async Task<bool> RunOnceAsync(string adminUrl, int stores, int latencyMs, int concurrency, double? interruptAt)
    {
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
            await c.ExecuteAsync(await File.ReadAllTextAsync(Path.Combine(TokenRefreshBench.Root, "scripts", "sql", "shopify-expiring-tokens.sql")));
            await TokenRefresh.Persistence.Migrator.ApplyAsync(dataSource);
            await c.ExecuteAsync("""
                INSERT INTO shopify_stores (shop_domain, access_token) SELECT 'shop' || i || '.myshopify.com', 'shpat_bench_' || i FROM generate_series(1, @stores) i;
                ANALYZE;
                """, new { stores });
        }

        var seed = Path.Combine(Path.GetTempPath(), $"tokenrefresh-bench-seed-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(seed, JsonSerializer.Serialize(new
        {
            shopify = Enumerable.Range(1, stores).Select(i => new
            {
                shop = $"shop{i}.myshopify.com", accessToken = $"shpat_bench_{i}", fault = i % 100 == 1 ? "RotateThenReset" : "None", faultTimes = 1,
                uninstalled = i % 100 == 2,
            }),
        }));
        using var fake = Child.Start(Path.Combine(TokenRefreshBench.Root, "tests", "TokenRefresh.FakePlatforms", "bin", "Release", "net10.0", "TokenRefresh.FakePlatforms.dll"),
            ["--urls", "http://127.0.0.1:0", "--latency-ms", latencyMs.ToString(CultureInfo.InvariantCulture), "--seed", seed], new Dictionary<string, string?>());
        var fakeUrl = (await fake.WaitForLineAsync("Fake platforms listening on ", TimeSpan.FromMinutes(2)))["Fake platforms listening on ".Length..].Trim();
        File.Delete(seed);
        using var http = new HttpClient();
        async Task<JsonNode> StatsAsync() => JsonNode.Parse(await http.GetStringAsync($"{fakeUrl}/_fake/stats"))!["shopify"]!;

        var settings = new Dictionary<string, string?>
        {
            ["DATABASE_URL"] = new UriBuilder(adminUrl) { Path = "/" + database }.Uri.AbsoluteUri,
            ["ETSY_CLIENT_ID"] = "fake-etsy-keystring",
            ["ETSY_CLIENT_SECRET"] = "fake-etsy-shared-secret",
            ["SHOPIFY_API_KEY"] = "fake-shopify-api-key",
            ["SHOPIFY_API_SECRET"] = "fake-shopify-api-secret",
            ["SHOPIFY_API_BASE_URL"] = fakeUrl + "/shopify/{shop}",
            ["SHOPIFY_MAX_CONCURRENCY"] = concurrency.ToString(CultureInfo.InvariantCulture),
            ["REFRESH_MAX_CONCURRENCY"] = Math.Max(16, concurrency).ToString(CultureInfo.InvariantCulture),
        };
        var cliDll = Path.Combine(TokenRefreshBench.Root, "src", "TokenRefresh.Cli", "bin", "Release", "net10.0", "TokenRefresh.Cli.dll");
        string[] args = ["shopify", "migrate-expiring", "--all", "--yes"];
        var clock = Stopwatch.StartNew();
        var runs = new List<(int Code, TimeSpan Wall, string Output)>();
        if (interruptAt is { } share)
        {
            using var first = Child.Start(cliDll, args, settings);
            while ((int)(await StatsAsync())["exchanges"]! < stores * share)
            {
                await Task.Delay(50);
            }

            first.Signal(2);
            runs.Add((await first.WaitForExitAsync(TimeSpan.FromHours(1)), clock.Elapsed, first.Output));
        }

        var started = clock.Elapsed;
        using (var rest = Child.Start(cliDll, args, settings))
        {
            runs.Add((await rest.WaitForExitAsync(TimeSpan.FromHours(1)), clock.Elapsed - started, rest.Output));
        }

        var stats = await StatsAsync();
        long migrated;
        await using (var c = new NpgsqlConnection(admin.ConnectionString))
        {
            migrated = await c.ExecuteScalarAsync<long>("SELECT count(*) FROM shopify_stores WHERE refresh_token IS NOT NULL");
        }

        Console.WriteLine();
        Console.WriteLine(interruptAt is null ? "Straight through:" : $"Stopped by SIGINT at {interruptAt:P0} of the exchanges sent, then run again:");
        foreach (var (code, wall, output) in runs)
        {
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  exit {code} after {wall.TotalSeconds:0.0} s ({lines.Count(l => l.Contains(" stores done in ", StringComparison.Ordinal))} progress lines, {lines.Length} lines in all)"));
            foreach (var line in lines.Where(l => l.Contains(" stores done in ", StringComparison.Ordinal)).Take(1).Concat(lines.Where(l => l.StartsWith("Done in", StringComparison.Ordinal) || l.StartsWith("Stopped after", StringComparison.Ordinal)
                || l.StartsWith("trying", StringComparison.Ordinal) || l.StartsWith("Run the command again", StringComparison.Ordinal)
                || l.Contains(" left, each named above", StringComparison.Ordinal))))
            {
                Console.WriteLine($"    {line}");
            }
        }

        var again = (int)stats["exchangedAgainAfterAnswer"]!;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  in all {clock.Elapsed.TotalSeconds:0.0} s; {migrated:N0} of {stores:N0} stores hold an expiring pair; {(int)stats["exchanges"]!:N0} exchanges sent; stores sent again after their answer had come: {again}"));

        await using (var c = new NpgsqlConnection(TokenRefreshBench.Connection(adminUrl)))
        {
            NpgsqlConnection.ClearAllPools();
            await c.ExecuteAsync($"DROP DATABASE IF EXISTS {database} WITH (FORCE)");
        }

        // Every store but the uninstalled ones moved, and none sent twice beyond the repeat of a lost answer.
        return migrated == stores - stores / 100 && again == 0;
    }
}
