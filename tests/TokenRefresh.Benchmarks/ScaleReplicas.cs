using System.Globalization;
using System.Text.Json.Nodes;
using Dapper;
using Npgsql;

namespace TokenRefresh.Benchmarks;

/// <summary>
/// Replicas at scale: the same backlog of due stores taken by one `tokenrefresh once`, then by four at once, with the
/// Etsy users due meanwhile, with the platforms answering at once and then at 50 ms a call. Shopify's calls counted at
/// the fake show whether any store was validated twice.
/// </summary>
internal static class ScaleReplicas
{
    public static async Task<bool> RunAsync(ScaleWorld world, int backlog, Action<string, CliRun, string> row)
    {
        // Answering at once, the replicas share the machine's two cores; at 50 ms a call, a replica waits on Shopify
        // (its calls in flight are capped), and more replicas make more calls at once: a tenth of the backlog then.
        var failed = false;
        var growth = new List<string>();
        foreach (var (latencyMs, due) in new[] { (0, backlog), (50, backlog / 10) })
        {
            await world.SetLatencyAsync(latencyMs);
            var rates = new List<double>();
            foreach (var replicas in new[] { 1, 4 })
            {
                var (rate, bad) = await RunAsync(world, replicas, latencyMs, due, row);
                rates.Add(rate);
                failed |= bad;
            }

            growth.Add(string.Create(CultureInfo.InvariantCulture, $"At {latencyMs} ms a call, four replicas validated {rates[1] / rates[0]:0.00} times as many stores a second as one."));
        }

        await world.SetLatencyAsync(0);
        Console.WriteLine();
        Console.WriteLine(string.Join(' ', growth));
        return failed;
    }

    private static async Task<(double Rate, bool Failed)> RunAsync(ScaleWorld world, int replicas, int latencyMs, int backlog, Action<string, CliRun, string> row)
    {
        var due = await world.MakeDueAsync(backlog);
        var before = await world.FakeStatsAsync();
        var runs = await Task.WhenAll(Enumerable.Range(0, replicas).Select(_ => world.CliAsync(["once"])));
        var after = await world.FakeStatsAsync();
        var validated = runs.Sum(r => Validated(r.Summary));
        var calls = Count(after, "shopify", "graphQlCalls") - Count(before, "shopify", "graphQlCalls");
        var wall = runs.Max(r => r.Wall);
        var what = string.Create(CultureInfo.InvariantCulture,
            $"{due:N0} stores made due: {validated:N0} validated, {calls:N0} Shopify calls ({(calls == validated ? "none twice" : "SOME TWICE")}), {validated / wall.TotalSeconds:N0} a second; " +
            $"Etsy refresh tokens sent twice: {Count(after, "etsy", "tokensUsedMoreThanOnce"):N0}; {string.Join(" | ", runs.Select(r => r.Summary))}");
        row($"{replicas} replica{(replicas == 1 ? "" : "s")} at once, {latencyMs} ms a call", runs.OrderByDescending(r => r.Wall).First() with { PeakMb = runs.Max(r => r.PeakMb) }, what);
        return (validated / wall.TotalSeconds, runs.Any(r => r.Exit != 0) || calls != validated);
    }

    private static long Validated(string summary) =>
        System.Text.RegularExpressions.Regex.Match(summary, @"Shopify: (\d+)/\d+ validated") is { Success: true } m ? long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;

    private static long Count(JsonNode stats, string platform, string name) => stats[platform]?[name]?.GetValue<long>() ?? 0;
}
