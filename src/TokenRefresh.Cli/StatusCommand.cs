using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using TokenRefresh.Persistence;

namespace TokenRefresh.Cli;

/// <summary>`tokenrefresh status`: a table for people, `--json` for scripts and alerts.</summary>
internal static class StatusCommand
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static void WriteJson(TextWriter output, DateTimeOffset now, IReadOnlyList<PlatformStatus> platforms) =>
        output.WriteLine(JsonSerializer.Serialize(new { generatedAt = now, recentWindowMinutes = StatusReader.RecentWindow.TotalMinutes, platforms }, Json));

    public static void WriteTable(TextWriter output, DateTimeOffset now, IReadOnlyList<PlatformStatus> platforms)
    {
        output.WriteLine($"Status at {now:yyyy-MM-dd HH:mm:ss} UTC");
        output.WriteLine();
        output.WriteLine($"{"platform",-10}{"due now",10}{"fine, last hour",18}{"backing off",14}{"needs re-auth",16}");
        foreach (var p in platforms)
        {
            output.WriteLine($"{p.Platform,-10}{p.Due,10}{p.Recent,18}{p.BackingOff,14}{p.NeedsReauth,16}");
        }

        foreach (var (title, reauth) in new[] { ("Needs re-authorisation (the user must connect again)", true), ("Backing off", false) })
        {
            var rows = platforms.SelectMany(p => p.Accounts.Where(a => a.NeedsReauth == reauth).Select(a => (p.Platform, Account: a))).ToList();
            if (rows.Count == 0)
            {
                continue;
            }

            output.WriteLine();
            output.WriteLine($"{title}:");
            output.WriteLine($"  {"platform",-9}{"account",-38}{"shop",-28}{"failures",9}  {"last error",-36}{"since",-21}{(reauth ? "" : "next attempt")}");
            foreach (var (platform, a) in rows)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {platform,-9}{a.Id,-38}{a.Shop ?? "",-28}{a.ConsecutiveFailures,9}  {a.LastError ?? "",-36}{a.LastErrorAt:yyyy-MM-dd HH:mm:ss}  {(reauth ? "" : $"{a.NextAttemptAt:yyyy-MM-dd HH:mm:ss}")}").TrimEnd());
            }
        }
    }
}
