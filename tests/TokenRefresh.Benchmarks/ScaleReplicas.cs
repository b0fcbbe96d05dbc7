using System.Globalization;
using System.Text.Json.Nodes;
using Dapper;
using Npgsql;

namespace TokenRefresh.Benchmarks;

/// <summary>
/// Replicas at scale: the same backlog of due stores taken by one `tokenrefresh once`, then by four at once, with the
/// Etsy users due meanwhile. Shopify's calls counted at the fake show whether any store was validated twice.
/// </summary>
internal static class ScaleReplicas
{
    public static async Task<bool> RunAsync(ScaleWorld world, int backlog, Action<string, CliRun, string> row)
    {
        var failed = false;
        var rates = new List<double>();
        foreach (var replicas in new[] { 1, 4 })
        {
            var due = await world.MakeDueAsync(backlog);
            var before = await world.FakeStatsAsync();
            var runs = await Task.WhenAll(Enumerable.Range(0, replicas).Select(_ => world.CliAsync(["once"])));
            var after = await world.FakeStatsAsync();
            var validated = runs.Sum(r => Validated(r.Summary));
            var calls = Count(after, "shopify", "graphQlCalls") - Count(before, "shopify", "graphQlCalls");
            var wall = runs.Max(r => r.Wall);
            rates.Add(validated / wall.TotalSeconds);
            failed |= runs.Any(r => r.Exit != 0) || calls != validated;
            var what = string.Create(CultureInfo.InvariantCulture,
                $"{due:N0} stores made due: {validated:N0} validated, {calls:N0} Shopify calls ({(calls == validated ? "none twice" : "SOME TWICE")}), {validated / wall.TotalSeconds:N0} a second; " +
                $"Etsy refresh tokens sent twice: {Count(after, "etsy", "tokensUsedMoreThanOnce"):N0}; {string.Join(" | ", runs.Select(r => r.Summary))}");
            row($"{replicas} replica{(replicas == 1 ? "" : "s")} at once", runs.OrderByDescending(r => r.Wall).First() with { PeakMb = runs.Max(r => r.PeakMb) }, what);
        }

        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Four replicas validated {rates[1] / rates[0]:0.00} times as many stores a second as one."));
        return failed;
    }

    private static long Validated(string summary) =>
        System.Text.RegularExpressions.Regex.Match(summary, @"Shopify: (\d+)/\d+ validated") is { Success: true } m ? long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;

    private static long Count(JsonNode stats, string platform, string name) => stats[platform]?[name]?.GetValue<long>() ?? 0;
}
