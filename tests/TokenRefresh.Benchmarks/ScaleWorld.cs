using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dapper;
using Npgsql;
using TokenRefresh.Settings;

namespace TokenRefresh.Benchmarks;

/// <summary>One run of the CLI as a process: its exit, wall time, peak memory (VmHWM), the cycle it logged, and its output.</summary>
internal sealed record CliRun(int Exit, TimeSpan Wall, long PeakMb, double? CycleSeconds, string Summary, string Output);

/// <summary>
/// The main application's database at scale, on the original's tables (app-tables.sql: no index beyond the primary keys),
/// the fake platforms seeded with the same accounts, and the CLI run against them as a process.
/// </summary>
internal sealed partial class ScaleWorld : IAsyncDisposable
{
    private readonly string _adminUrl;
    private readonly Child _fake;
    private readonly string _fakeUrl;

    private ScaleWorld(string adminUrl, string database, Child fake, string fakeUrl)
    {
        (_adminUrl, Database, _fake, _fakeUrl) = (adminUrl, database, fake, fakeUrl);
    }

    public string Database { get; }

    public string Db => new NpgsqlConnectionStringBuilder(TokenRefreshBench.Connection(_adminUrl)) { Database = Database, CommandTimeout = 600 }.ConnectionString;

    /// <summary>A fresh database with <paramref name="stores"/> stores (one in 50 inactive) and <paramref name="etsy"/> Etsy users whose tokens expire evenly over the next hour.</summary>
    public static async Task<ScaleWorld> CreateAsync(string adminUrl, int stores, int etsy, bool indexes)
    {
        var database = $"scale_{Guid.NewGuid():N}";
        await using (var c = new NpgsqlConnection(TokenRefreshBench.Connection(adminUrl)))
        {
            await c.ExecuteAsync($"CREATE DATABASE {database}");
            // Every statement of the service's that takes longer than 200 ms is logged with its plan, as it ran (docs/performance.md).
            await c.ExecuteAsync($"ALTER DATABASE {database} SET session_preload_libraries = 'auto_explain'");
            await c.ExecuteAsync($"ALTER DATABASE {database} SET auto_explain.log_min_duration = 200");
            await c.ExecuteAsync($"ALTER DATABASE {database} SET auto_explain.log_analyze = on");
        }

        var db = new NpgsqlConnectionStringBuilder(TokenRefreshBench.Connection(adminUrl)) { Database = database, CommandTimeout = 1200 }.ConnectionString;
        await using (var dataSource = NpgsqlDataSource.Create(db))
        {
            await using var c = await dataSource.OpenConnectionAsync();
            await c.ExecuteAsync(await File.ReadAllTextAsync(Path.Combine(TokenRefreshBench.Root, "scripts", "sql", "app-tables.sql")));
            await TokenRefresh.Persistence.Migrator.ApplyAsync(dataSource);
            await c.ExecuteAsync("""
                INSERT INTO shopify_stores (shop_domain, access_token, is_active)
                SELECT 'shop' || i || '.myshopify.com', 'shpat_scale_' || i, i % 50 <> 0 FROM generate_series(1, @stores) i;
                INSERT INTO etsy_users (access_token, refresh_token, token_expires_at)
                SELECT 'at-' || i, i || '.rt-scale-' || i, (now() AT TIME ZONE 'UTC') + (i % 3600) * interval '1 second' FROM generate_series(1, @etsy) i;
                ANALYZE;
                """, new { stores, etsy });
            if (indexes)
            {
                // Each statement apart (CREATE INDEX CONCURRENTLY cannot run in a batch), its comments left out: they hold semicolons.
                var script = string.Join('\n', (await File.ReadAllLinesAsync(Path.Combine(TokenRefreshBench.Root, "scripts", "sql", "recommended-indexes.sql")))
                    .Where(l => !l.TrimStart().StartsWith("--", StringComparison.Ordinal)));
                foreach (var statement in script.Split(';').Where(s => s.Contains("CREATE", StringComparison.Ordinal)))
                {
                    await c.ExecuteAsync(statement);
                }
            }
        }

        var seed = Path.Combine(Path.GetTempPath(), $"tokenrefresh-scale-seed-{Guid.NewGuid():N}.json");
        await WriteSeedAsync(seed, stores, etsy);
        var fake = Child.Start(Path.Combine(TokenRefreshBench.Root, "tests", "TokenRefresh.FakePlatforms", "bin", "Release", "net10.0", "TokenRefresh.FakePlatforms.dll"),
            ["--urls", "http://127.0.0.1:0", "--seed", seed], new Dictionary<string, string?>());
        var fakeUrl = (await fake.WaitForLineAsync("Fake platforms listening on ", TimeSpan.FromMinutes(10)))["Fake platforms listening on ".Length..].Trim();
        File.Delete(seed);
        return new ScaleWorld(adminUrl, database, fake, fakeUrl);
    }

    // The fakes' accounts, streamed: a million stores do not fit a serialiser's buffer comfortably.
    private static async Task WriteSeedAsync(string path, int stores, int etsy)
    {
        await using var file = File.Create(path);
        await using var json = new Utf8JsonWriter(file);
        json.WriteStartObject();
        json.WriteStartArray("etsy");
        for (var i = 1; i <= etsy; i++)
        {
            json.WriteStartObject();
            json.WriteString("refreshToken", $"{i}.rt-scale-{i}");
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteStartArray("shopify");
        for (var i = 1; i <= stores; i++)
        {
            json.WriteStartObject();
            json.WriteString("shop", $"shop{i}.myshopify.com");
            json.WriteString("accessToken", $"shpat_scale_{i}");
            json.WriteEndObject();
            if (i % 10_000 == 0)
            {
                await json.FlushAsync();
            }
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>The settings of the measured deployment: a day's validation interval, Etsy at 1,000 a second, the rest as shipped.</summary>
    public Dictionary<string, string?> Settings(IReadOnlyDictionary<string, string?>? extra = null)
    {
        var url = new UriBuilder(_adminUrl) { Path = "/" + Database }.Uri.AbsoluteUri;
        var settings = new Dictionary<string, string?>
        {
            ["DATABASE_URL"] = url,
            ["ETSY_CLIENT_ID"] = "fake-etsy-keystring",
            ["ETSY_CLIENT_SECRET"] = "fake-etsy-shared-secret",
            ["SHOPIFY_API_KEY"] = "fake-shopify-api-key",
            ["SHOPIFY_API_SECRET"] = "fake-shopify-api-secret",
            ["ETSY_API_BASE_URL"] = _fakeUrl,
            ["SHOPIFY_API_BASE_URL"] = _fakeUrl + "/shopify/{shop}",
            ["SHOPIFY_VALIDATE_INTERVAL_MINUTES"] = "1440",
            ["ETSY_MAX_REQUESTS_PER_SECOND"] = "1000",
            ["LOG_LEVEL"] = "INFO",
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        return settings;
    }

    public static string CliDll { get; set; } = Path.Combine(TokenRefreshBench.Root, "src", "TokenRefresh.Cli", "bin", "Release", "net10.0", "TokenRefresh.Cli.dll");

    /// <summary>The CLI with <paramref name="args"/>, to its exit, its peak memory read from /proc while it runs.</summary>
    public async Task<CliRun> CliAsync(string[] args, IReadOnlyDictionary<string, string?>? extra = null)
    {
        var clock = Stopwatch.StartNew();
        using var cli = Child.Start(CliDll, args, Settings(extra));
        long peakKb = 0;
        var exited = cli.WaitForExitAsync(TimeSpan.FromMinutes(30));
        while (!exited.IsCompleted)
        {
            peakKb = Math.Max(peakKb, cli.PeakRssKb());
            await Task.WhenAny(exited, Task.Delay(20));
        }

        var exit = await exited;
        var wall = clock.Elapsed;
        var completed = cli.Output.Split('\n').LastOrDefault(l => l.Contains("Refresh cycle completed", StringComparison.Ordinal))?.Trim() ?? "";
        var cycle = CycleMs().Match(completed) is { Success: true } m ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) / 1000 : (double?)null;
        var summary = completed.Contains(". ", StringComparison.Ordinal) ? completed[(completed.IndexOf(". ", StringComparison.Ordinal) + 2)..] : completed;
        return new CliRun(exit, wall, peakKb / 1024, cycle, summary, cli.Output);
    }

    /// <summary>The service's state rows by platform, and the table's size on disk.</summary>
    public async Task<(long Rows, string ByPlatform, long Bytes)> StateAsync()
    {
        await using var c = new NpgsqlConnection(Db);
        var rows = (await c.QueryAsync<(string Platform, long Count)>("SELECT platform, count(*) FROM token_refresh_state GROUP BY 1 ORDER BY 1")).ToList();
        var bytes = await c.ExecuteScalarAsync<long>("SELECT pg_total_relation_size('token_refresh_state')");
        return (rows.Sum(r => r.Count), string.Join(", ", rows.Select(r => $"{r.Platform} {r.Count:N0}")), bytes);
    }

    /// <summary>State rows whose account no longer exists in the main tables (leftovers).</summary>
    public async Task<long> LeftoversAsync()
    {
        await using var c = new NpgsqlConnection(Db);
        return await c.ExecuteScalarAsync<long>("""
            SELECT (SELECT count(*) FROM token_refresh_state s WHERE s.platform LIKE 'shopify%'
                    AND NOT EXISTS (SELECT 1 FROM shopify_stores st WHERE st.id::text = s.account_id))
                 + (SELECT count(*) FROM token_refresh_state s WHERE s.platform LIKE 'etsy%'
                    AND NOT EXISTS (SELECT 1 FROM etsy_users u WHERE u.user_id::text = s.account_id))
            """);
    }

    /// <summary>Makes <paramref name="count"/> validated stores due again now; returns how many.</summary>
    public async Task<int> MakeDueAsync(int count)
    {
        await using var c = new NpgsqlConnection(Db);
        return await c.ExecuteAsync("""
            UPDATE token_refresh_state SET next_check_at = now() - interval '1 second'
            WHERE platform = 'shopify' AND account_id IN (
                SELECT account_id FROM token_refresh_state WHERE platform = 'shopify' AND next_check_at > now() LIMIT @count)
            """, new { count });
    }

    /// <summary>Every fake platform answers after <paramref name="ms"/> from now on.</summary>
    public async Task SetLatencyAsync(int ms)
    {
        using var http = new HttpClient();
        using var body = new StringContent($"{{\"ms\":{ms}}}", System.Text.Encoding.UTF8, "application/json");
        (await http.PostAsync(_fakeUrl.TrimEnd('/') + "/_fake/latency", body)).EnsureSuccessStatusCode();
    }

    /// <summary>The fake platforms' counts (/_fake/stats).</summary>
    public Task<System.Text.Json.Nodes.JsonNode> FakeStatsAsync() => FakeStatsAsync(_fakeUrl);

    /// <summary>The counts of the fake platforms at <paramref name="fakeUrl"/>.</summary>
    public static async Task<System.Text.Json.Nodes.JsonNode> FakeStatsAsync(string fakeUrl)
    {
        using var http = new HttpClient();
        return System.Text.Json.Nodes.JsonNode.Parse(await http.GetStringAsync(fakeUrl.TrimEnd('/') + "/_fake/stats"))!;
    }

    /// <summary>The main application deletes accounts: <paramref name="stores"/> stores and <paramref name="users"/> Etsy users, at random.</summary>
    public async Task DeleteAsync(int stores, int users)
    {
        await using var c = new NpgsqlConnection(Db);
        await c.ExecuteAsync("""
            DELETE FROM shopify_stores WHERE id IN (SELECT id FROM shopify_stores TABLESAMPLE SYSTEM (5) LIMIT @stores);
            DELETE FROM etsy_users WHERE user_id IN (SELECT user_id FROM etsy_users TABLESAMPLE SYSTEM (5) LIMIT @users);
            """, new { stores, users });
    }

    public async ValueTask DisposeAsync()
    {
        _fake.Dispose();
        NpgsqlConnection.ClearAllPools();
        await using var c = new NpgsqlConnection(TokenRefreshBench.Connection(_adminUrl));
        await c.ExecuteAsync($"DROP DATABASE IF EXISTS {Database} WITH (FORCE)");
    }

    [GeneratedRegex(@"Refresh cycle completed in (\d+) ms")]
    private static partial Regex CycleMs();
}
