using Dapper;
using Npgsql;

namespace TokenRefresh.Availability;

/// <summary>What an operator would look at when a target is missed: the accounts still unavailable at the end, their state, and the files beside the replicas' logs.</summary>
internal static class Diagnostics
{
    public static async Task WriteAsync(string adminDb, string work, IReadOnlyList<Sample> samples, IReadOnlyList<Fault> faults)
    {
        var last = samples.LastOrDefault(s => !s.Failed);
        await using var c = new NpgsqlConnection(adminDb);
        foreach (var key in last?.Invalid.Take(10) ?? [])
        {
            var id = key.StartsWith("etsy:", StringComparison.Ordinal) ? key[5..]
                : (await c.ExecuteScalarAsync<string>("SELECT id::text FROM shopify_stores WHERE shop_domain = @Shop", new { Shop = key[5..] }))!;
            var state = await c.QueryFirstOrDefaultAsync("SELECT platform, consecutive_failures, last_error, last_error_at, next_attempt_at, needs_reauth, unknown_outcome_at, lease_until FROM token_refresh_state WHERE account_id = @Id", new { Id = id });
            Console.WriteLine($"unavailable at the end: {key} ({id}) state: {state}");
        }

        await File.WriteAllLinesAsync(Path.Combine(work, "unavailable.txt"),
            samples.Where(x => x.Failed || x.Invalid.Count > 0).Select(x => $"{x.At:HH:mm:ss.f} {(x.Failed ? "(sample failed)" : string.Join(' ', x.Invalid.Select(k => x.Rotating.Contains(k) ? k + "(rotating)" : k)))}"));
        await File.WriteAllLinesAsync(Path.Combine(work, "faults.txt"), faults.Select(f => $"{f.Start:HH:mm:ss.f} {f.End:HH:mm:ss.f} {f.Name}"));
        Console.WriteLine($"The replicas' logs, the faults and the unavailable accounts of each sample: {work}");
    }
}
