using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace TokenRefresh.Benchmarks;

/// <summary>
/// The service on the original's tables at a large team's size (./scripts/bench.sh --scale): the first start, steady
/// cycles, `status`, the main application deleting accounts, and every statement slower than 200 ms with its plan
/// (auto_explain, from PostgreSQL's log). Each run is `tokenrefresh once` or `status` as a process of its own.
/// </summary>
internal static partial class ScaleBench
{
    public static async Task<int> RunAsync(string adminUrl, string pgLog, int stores, int etsy, bool indexes)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Scale: {stores:N0} stores (1 in 50 inactive) and {etsy:N0} Etsy users on the original's tables, {(indexes ? "with" : "without")} the recommended indexes; SHOPIFY_VALIDATE_INTERVAL_MINUTES=1440, ETSY_MAX_REQUESTS_PER_SECOND=1000, platforms answering at once"));
        var seeding = Stopwatch.StartNew();
        await using var world = await ScaleWorld.CreateAsync(adminUrl, stores, etsy, indexes);
        Console.WriteLine($"Seeded in {seeding.Elapsed.TotalSeconds:0} s");
        var logFrom = new FileInfo(pgLog).Length;
        var failed = false;

        Console.WriteLine("| step | wall | cycle | peak memory | what it did |");
        Console.WriteLine("|---|---|---|---|---|");
        for (var i = 1; i <= 4; i++)
        {
            var first = await OnceAsync(world, $"first start, cycle {i}");
            failed |= first.Exit != 0;
            if (!first.Summary.Contains("left for the next cycle", StringComparison.Ordinal))
            {
                break;
            }
        }

        for (var i = 1; i <= 3; i++)
        {
            failed |= (await OnceAsync(world, $"steady cycle {i}")).Exit != 0;
        }

        var status = await world.CliAsync(["status", "--json"]);
        failed |= status.Exit != 0;
        Row("`status --json`", status, $"exit {status.Exit}, {status.Output.Length:N0} characters");

        var before = await world.StateAsync();
        var deleted = (Stores: stores / 50, Users: etsy * 3 / 200);
        await world.DeleteAsync(deleted.Stores, deleted.Users);
        var leftBefore = await world.LeftoversAsync();
        failed |= (await OnceAsync(world, $"after the main application deleted {deleted.Stores:N0} stores and {deleted.Users:N0} Etsy users")).Exit != 0;
        var after = await world.StateAsync();
        var leftAfter = await world.LeftoversAsync();
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"token_refresh_state before the deletion: {before.Rows:N0} rows ({before.ByPlatform}), {before.Bytes / 1048576.0:0} MB; after it, {leftBefore:N0} of them for deleted accounts; after the next cycle: {after.Rows:N0} rows, {leftAfter:N0} for deleted accounts, {after.Bytes / 1048576.0:0} MB."));

        Console.WriteLine();
        Console.WriteLine("| replicas | wall | cycle | peak memory (each) | what they did |");
        Console.WriteLine("|---|---|---|---|---|");
        failed |= await ScaleReplicas.RunAsync(world, stores / 5, Row);

        Console.WriteLine();
        var plans = Path.Combine(Path.GetTempPath(), $"tokenrefresh-scale-plans-{DateTime.UtcNow:yyyyMMdd-HHmmss}.log");
        await using (var log = new FileStream(pgLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        await using (var copy = File.Create(plans))
        {
            log.Seek(logFrom, SeekOrigin.Begin);
            await log.CopyToAsync(copy);
        }

        Console.WriteLine($"Statements slower than 200 ms (auto_explain; their plans in {plans}), by their first line: runs, slowest, total:");
        foreach (var line in SlowStatements(pgLog, logFrom))
        {
            Console.WriteLine(line);
        }

        return failed ? 1 : 0;
    }

    private static async Task<CliRun> OnceAsync(ScaleWorld world, string step)
    {
        var run = await world.CliAsync(["once"]);
        Row(step, run, run.Exit == 0 ? run.Summary : $"exit {run.Exit}: {string.Join(" / ", run.Output.Split('\n').Where(l => l.Contains("ERROR", StringComparison.Ordinal)).Take(2))}");
        return run;
    }

    private static void Row(string step, CliRun run, string what) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {step} | {run.Wall.TotalSeconds:0.0} s | {(run.CycleSeconds is { } c ? $"{c:0.0} s" : "-")} | {run.PeakMb} MB | {what} |"));

    // auto_explain's entries since the run began: "duration: N ms  plan:", then "Query Text: ..." on the next lines.
    private static IEnumerable<string> SlowStatements(string pgLog, long from)
    {
        using var stream = new FileStream(pgLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        stream.Seek(from, SeekOrigin.Begin);
        using var reader = new StreamReader(stream);
        var entries = new List<(double Ms, string Query)>();
        double? pending = null;
        while (reader.ReadLine() is { } line)
        {
            if (Duration().Match(line) is { Success: true } d)
            {
                pending = double.Parse(d.Groups[1].Value, CultureInfo.InvariantCulture);
            }
            else if (pending is { } ms && line.TrimStart().StartsWith("Query Text:", StringComparison.Ordinal))
            {
                var text = line.TrimStart()["Query Text:".Length..].Trim();
                // A statement's first line can be blank or a bare SELECT: name it by its first 120 characters, whitespace folded.
                var folded = Regex.Replace($"{text} {reader.ReadLine()}", @"\s+", " ").Trim();
                entries.Add((ms, folded[..Math.Min(120, folded.Length)]));
                pending = null;
            }
        }

        return entries.GroupBy(e => e.Query).OrderByDescending(g => g.Sum(e => e.Ms))
            .Select(g => string.Create(CultureInfo.InvariantCulture, $"- {g.Count()} x, slowest {g.Max(e => e.Ms) / 1000:0.00} s, total {g.Sum(e => e.Ms) / 1000:0.0} s: {g.Key}"));
    }

    [GeneratedRegex(@"duration: ([\d.]+) ms\s+plan:")]
    private static partial Regex Duration();
}
