using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Npgsql;

namespace TokenRefresh.Floor;

/// <summary>
/// The floor (`--floor`): a process that does only the I/O the cycle cannot do without, in the plainest .NET, to show
/// what this machine charges for it: per Etsy user one token POST and one UPDATE of its row, per store one GraphQL
/// POST, at the same concurrency, with no claim, permit, state, log line, metric or resilience pipeline. Its CPU per
/// account, startup included, is a reference point for a .NET service held to the same contract on the same machine.
/// </summary>
internal static class Floor
{
    /// <summary>FLOOR_CONNECTION_STRING (from the benchmark); PLATFORMS_URL ETSY_N SHOPIFY_N CONCURRENCY.</summary>
    public static async Task<int> Main(string[] args)
    {
        if (args.Length != 4 || Environment.GetEnvironmentVariable("FLOOR_CONNECTION_STRING") is not { Length: > 0 } connectionString)
        {
            await Console.Error.WriteLineAsync("usage: FLOOR_CONNECTION_STRING=... TokenRefresh.Floor PLATFORMS_URL ETSY_N SHOPIFY_N CONCURRENCY");
            return 2;
        }

        return await RunAsync(connectionString, args[0], int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture),
            int.Parse(args[3], CultureInfo.InvariantCulture));
    }

    private static async Task<int> RunAsync(string connectionString, string platformsUrl, int etsyCount, int shopifyCount, int concurrency)
    {
        await using var db = NpgsqlDataSource.Create(connectionString);
        using var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { BaseAddress = new Uri(platformsUrl + "/") };
        // The users' keys, read once (the cycle reads them with its pages of due rows).
        var users = new Dictionary<string, Guid>();
        await using (var read = db.CreateCommand("SELECT refresh_token, user_id FROM etsy_users"))
        await using (var reader = await read.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                users[reader.GetString(0)] = reader.GetGuid(1);
            }
        }

        var work = Enumerable.Range(1, Math.Max(etsyCount, shopifyCount))
            .SelectMany(i => new[] { (Etsy: true, Id: i), (Etsy: false, Id: i) })
            .Where(w => w.Etsy ? w.Id <= etsyCount : w.Id <= shopifyCount);
        var failed = 0;
        await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = concurrency }, async (w, ct) =>
        {
            if (!(w.Etsy ? await RefreshAsync(http, db, users, w.Id, ct) : await ValidateAsync(http, w.Id, ct)))
            {
                Interlocked.Increment(ref failed);
            }
        });
        Console.WriteLine($"floor: {etsyCount + shopifyCount - failed} succeeded, {failed} failed");
        return failed == 0 ? 0 : 1;
    }

    private static async Task<bool> RefreshAsync(HttpClient http, NpgsqlDataSource db, Dictionary<string, Guid> users, int id, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v3/public/oauth/token")
        {
            Content = new FormUrlEncodedContent([new("grant_type", "refresh_token"), new("client_id", "fake-etsy-keystring"), new("refresh_token", Token(id))]),
        };
        request.Headers.Add("x-api-key", "fake-etsy-keystring:fake-etsy-shared-secret");
        using var response = await http.SendAsync(request, ct);
        if (!response.IsSuccessStatusCode)
        {
            return false;
        }

        using var json = JsonDocument.Parse(await response.Content.ReadAsStreamAsync(ct));
        var root = json.RootElement;
        await using var command = db.CreateCommand("UPDATE etsy_users SET access_token = $1, refresh_token = $2, token_expires_at = $3 WHERE user_id = $4");
        command.Parameters.Add(new() { Value = root.GetProperty("access_token").GetString() });
        command.Parameters.Add(new() { Value = root.GetProperty("refresh_token").GetString() });
        command.Parameters.Add(new() { Value = DateTime.SpecifyKind(DateTime.UtcNow.AddSeconds(root.GetProperty("expires_in").GetInt32()), DateTimeKind.Unspecified) });
        command.Parameters.Add(new() { Value = users[Token(id)] });
        return await command.ExecuteNonQueryAsync(ct) == 1;
    }

    private static string Token(int id) => $"{id}.rt-bench-{id}";

    private static async Task<bool> ValidateAsync(HttpClient http, int id, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"shopify/shop{id}.myshopify.com/admin/api/2026-10/graphql.json")
        {
            Content = new StringContent("""{"query":"{ shop { name } }"}""", Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
        };
        request.Headers.Add("X-Shopify-Access-Token", $"shpat_bench_{id}");
        using var response = await http.SendAsync(request, ct);
        if (!response.IsSuccessStatusCode)
        {
            return false;
        }

        using var json = JsonDocument.Parse(await response.Content.ReadAsStreamAsync(ct));
        return json.RootElement.TryGetProperty("data", out _);
    }
}
