using System.Text.Json;
using System.Text.RegularExpressions;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// deploy/alerts.bicep compiled by the Bicep compiler, and each rule's query checked against what the service
/// really emits: the event names its log messages carry and the metrics it records. (No Kusto engine here.)
/// </summary>
public sealed partial class AlertsAsCodeTests
{
    [Xunit.Fact]
    public void AlertsBicep_Compiles_FourRules_EachOnEventsAndMetricsTheServiceEmits()
    {
        var template = Bicep.Build(Repo.File("deploy/alerts.bicep"));
        // Bicep emits the loop as one resource copied once per rule.
        var resources = template.GetProperty("resources");
        var rule = resources.ValueKind == JsonValueKind.Object ? resources.EnumerateObject().Single(r => r.Value.TryGetProperty("copy", out _)).Value
            : resources.EnumerateArray().Single(r => r.TryGetProperty("copy", out _));
        Assert.Equal("Microsoft.Insights/scheduledQueryRules", rule.GetProperty("type").GetString());
        var bicep = File.ReadAllText(Repo.File("deploy/alerts.bicep"));
        Assert.Equal(
            ["tokenrefresh-cycle-failed", "tokenrefresh-no-cycle", "tokenrefresh-reauth-rising", "tokenrefresh-received-not-stored"],
            RuleName().Matches(bicep).Select(m => m.Groups[1].Value));

        var source = string.Join('\n', Directory.EnumerateFiles(Repo.File("src"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Select(File.ReadAllText));
        var queries = Query().Matches(bicep).Select(m => Regex.Unescape(m.Groups[1].Value)).ToList();
        Assert.Equal(4, queries.Count);
        foreach (var query in queries)
        {
            // Every event a query names is a source-generated log message of the service (its method is the EventName).
            foreach (Match e in EventName().Matches(query))
            {
                Assert.Matches($@"\[LoggerMessage\([^\]]*\]\s*public static partial void {e.Groups[1].Value}\(", source);
            }

            foreach (Match m in MetricName().Matches(query))
            {
                Assert.Contains($"\"{m.Groups[1].Value}\"", source, StringComparison.Ordinal);
            }

            // Counting traces goes through itemCount, which stays right under sampling.
            if (query.StartsWith("traces", StringComparison.Ordinal))
            {
                Assert.Contains("sum(itemCount)", query, StringComparison.Ordinal);
            }
        }

        Assert.Contains(queries, q => q.Contains("\"CycleCompleted\"", StringComparison.Ordinal) && q.Contains("severityLevel >= 3", StringComparison.Ordinal));
        Assert.Contains(queries, q => q.Contains("\"ReceivedButNotStored\"", StringComparison.Ordinal));
        Assert.Contains(queries, q => q.Contains("tokenrefresh.accounts.needs_reauth", StringComparison.Ordinal));
    }

    [Xunit.Fact]
    public void TelemetryDocs_EveryTraceQueryCountsWithItemCount()
    {
        var docs = File.ReadAllText(Repo.File("docs/telemetry.md"));
        var blocks = Regex.Matches(docs, "```kusto\n(.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(blocks);
        foreach (var block in blocks.Where(b => b.Contains("traces", StringComparison.Ordinal) && b.Contains("summarize", StringComparison.Ordinal)))
        {
            Assert.DoesNotContain("count()", block, StringComparison.Ordinal);
            Assert.Contains("itemCount", block, StringComparison.Ordinal);
        }
    }

    [GeneratedRegex(@"^\s+name: '(tokenrefresh-[a-z-]+)'", RegexOptions.Multiline)]
    private static partial Regex RuleName();

    [GeneratedRegex(@"^\s+query: '(.*)'$", RegexOptions.Multiline)]
    private static partial Regex Query();

    [GeneratedRegex(@"EventName\) == ""(\w+)""")]
    private static partial Regex EventName();

    [GeneratedRegex(@"name == ""(tokenrefresh\.[a-z_.]+)""")]
    private static partial Regex MetricName();
}
