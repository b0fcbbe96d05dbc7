using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Status;

namespace TokenRefresh.Cli.Commands;

/// <summary>`tokenrefresh status [--json]`: a table for people, `--json` for scripts and alerts.</summary>
internal static class StatusCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var json = new Option<bool>("--json") { Description = "One JSON document instead of the table" };
        var status = new Command("status", "Accounts due, fine lately, backing off and needing re-authorisation") { json };
        status.SetAction((parse, _) => CliHost.RunAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) =>
            RunAsync(services, stdout, stderr, parse.GetValue(json), stop)));
        return status;
    }

    private static async Task<int> RunAsync(IServiceProvider services, TextWriter stdout, TextWriter stderr, bool json, CancellationToken cancellationToken)
    {
        try
        {
            var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
            var status = await services.GetRequiredService<StatusReader>().ReadAsync(cancellationToken);
            if (json)
            {
                WriteJson(stdout, now, status);
            }
            else
            {
                WriteTable(stdout, now, status);
            }

            return CliApp.Success;
        }
        catch (NpgsqlException e)
        {
            return CommandLog.DatabaseFailed(services, e, "status");
        }
        catch (SchemaException e)
        {
            stderr.WriteLine(e.Message);
            return CliApp.CannotRun;
        }
    }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static void WriteJson(TextWriter output, DateTimeOffset now, IReadOnlyList<PlatformStatus> platforms) =>
        output.WriteLine(JsonSerializer.Serialize(new { generatedAt = now, recentWindowMinutes = StatusReader.RecentWindow.TotalMinutes, platforms }, Json));

    // A platform's daily quota, what the refreshes take of it, and (past it) what expires for want of it.
    private static void WriteQuota(TextWriter output, string platform, QuotaStatus q)
    {
        output.WriteLine();
        var quota = q.PerDay is { } perDay
            ? string.Create(CultureInfo.InvariantCulture, $"{perDay:N0} requests a day, {q.Remaining:N0} left at {q.SeenAt:yyyy-MM-dd HH:mm} UTC")
            : "not seen yet (it comes with the platform's answers)";
        output.WriteLine($"{platform} daily quota: {quota}.");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  Refreshing {q.Accounts:N0} accounts takes about {q.RefreshesPerDay:N0} requests a day{(q.SharePercent is { } share ? $", {share:0.#}% of it" : "")}" +
            $"{(q.SharePercent > q.WarnPercent ? $": more than the {q.WarnPercent}% that leaves room for the main application's own calls" : "")}."));
        if (q.ExpiringForWantOfQuota > 0)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  The quota keeps {q.Accounts - q.ExpiringForWantOfQuota:N0} of them refreshed: the tokens of the other {q.ExpiringForWantOfQuota:N0} expire for want of quota, " +
                $"the soonest-expiring refreshed first; the first {(q.ExpiringFrom is { } from ? $"at {from:yyyy-MM-dd HH:mm} UTC, once the requests left today are spent" : "once the requests left today are spent")}."));
        }
    }

    public static void WriteTable(TextWriter output, DateTimeOffset now, IReadOnlyList<PlatformStatus> platforms)
    {
        output.WriteLine($"Status at {now:yyyy-MM-dd HH:mm:ss} UTC");
        output.WriteLine();
        output.WriteLine($"{"platform",-18}{"due now",8}{"fine, last hour",17}{"backing off",13}{"needs re-auth",15}{"refresh token ending",22}{"not called",12}");
        foreach (var p in platforms)
        {
            output.WriteLine(p.NotRun is { } why
                ? $"{p.Platform,-18}not run: {why}"
                : $"{p.Platform,-18}{p.Due,8}{p.Recent,17}{p.BackingOff,13}{p.NeedsReauth,15}{p.RefreshTokenExpiring,22}{p.NotCalled,12}");
        }

        foreach (var p in platforms)
        {
            if (p.Quota is { } q)
            {
                WriteQuota(output, p.Platform, q);
            }
        }

        foreach (var p in platforms)
        {
            if (p.NonExpiringCutoff is { } cutoff)
            {
                output.WriteLine();
                output.WriteLine($"Shopify non-expiring tokens: {cutoff}");
            }
        }

        foreach (var p in platforms.Where(p => p.DeactivationPaused > 0))
        {
            output.WriteLine();
            output.WriteLine($"{p.Platform}: {p.DeactivationPaused} stores were rejected (401) while deactivation was paused by the incident guard; they stay active (see the logs).");
        }

        var groups = new[]
        {
            ("not_called", $"Not called, because their {Platforms.Shopify.ShopDomain.Rule}"),
            ("needs_reauth", "Needs re-authorisation (the user must connect again)"),
            ("backing_off", "Backing off"),
            ("refresh_token_expiring", "Refresh token ends within 7 days (the user must connect again before then)"),
        };
        foreach (var (group, title) in groups)
        {
            var rows = platforms.SelectMany(p => p.Accounts.Where(a => a.Group == group).Select(a => (p.Platform, Account: a))).ToList();
            if (rows.Count == 0)
            {
                continue;
            }

            output.WriteLine();
            output.WriteLine($"{title}:");
            output.WriteLine($"  {"platform",-18}{"account",-38}{"shop",-28}{"failures",9}  {"last error",-36}{"since",-18}{(group == "backing_off" ? "next attempt" : group == "refresh_token_expiring" ? "ends" : "")}");
            foreach (var (platform, a) in rows)
            {
                var last = group == "backing_off" ? a.NextAttemptAt : group == "refresh_token_expiring" ? a.RefreshTokenExpiresAt : null;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {platform,-18}{a.Id,-38}{a.Shop ?? "",-28}{a.ConsecutiveFailures,9}  {a.LastError ?? "",-36}{a.LastErrorAt,-18:yyyy-MM-dd HH:mm}{last:yyyy-MM-dd HH:mm}").TrimEnd());
            }
        }
    }
}
