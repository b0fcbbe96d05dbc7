using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using TokenRefresh.Settings;

namespace TokenRefresh.Cli.Commands;

/// <summary>`tokenrefresh health`: 0 while `run`'s heartbeat is fresh, 1 when it is stale (the CLI image's HEALTHCHECK).</summary>
internal static class HealthCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var health = new Command("health", "Exit 0 if `run` completed a cycle recently enough (HEARTBEAT_FILE), 1 if not: the image's HEALTHCHECK");
        health.SetAction(_ => Heartbeat.Check(stdout, stderr));
        return health;
    }
}

/// <summary>
/// HEARTBEAT_FILE: `run` writes it after each cycle that ran, with the time by which the next one will have ended;
/// `tokenrefresh health` (the image's HEALTHCHECK) reads that time, so the check follows any schedule.
/// </summary>
internal static class Heartbeat
{
    /// <summary>Beyond the next cycle's longest possible end, before the process counts as stuck.</summary>
    private static readonly TimeSpan Grace = TimeSpan.FromMinutes(1);

    /// <summary>When a cycle due at <paramref name="next"/> will have ended, at the latest: its lease, and a grace.</summary>
    public static DateTimeOffset StaleAfter(CycleSettings options, DateTimeOffset next) => next + options.LeaseLength + Grace;

    /// <summary>Says the next cycle (due at <paramref name="next"/>) will have ended by then, plus its lease and a grace.</summary>
    public static void Write(CycleSettings options, DateTimeOffset now, DateTimeOffset next, string? lastCycle)
    {
        if (options.HeartbeatFile is not { } path)
        {
            return;
        }

        var staleAfter = StaleAfter(options, next);
        // Written aside and moved, so that a check never reads half a file.
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, string.Create(CultureInfo.InvariantCulture,
            $"{staleAfter.ToUnixTimeSeconds()}\nstale after {staleAfter:yyyy-MM-dd HH:mm:ss} UTC; written {now:yyyy-MM-dd HH:mm:ss} UTC\n{lastCycle}\n"));
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>`tokenrefresh health`: 0 while the heartbeat is fresh, 1 when stale or missing, 2 without HEARTBEAT_FILE.</summary>
    public static int Check(TextWriter stdout, TextWriter stderr)
    {
        // Only this setting: the check needs no database, nor any other setting.
        var path = new SettingsReader(CliHost.AddSettings(new ConfigurationBuilder()).Build()).Text(CycleSettings.HeartbeatSetting);
        if (path is null)
        {
            stderr.WriteLine("Configuration error: HEARTBEAT_FILE is not set: `run` writes no heartbeat to check.");
            return CliApp.CannotRun;
        }

        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (IOException)
        {
            stderr.WriteLine($"unhealthy: no heartbeat at {path} yet (`run` writes it when it starts and after each cycle)");
            return CliApp.AccountsFailed;
        }

        if (lines.Length == 0 || !long.TryParse(lines[0], NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
        {
            stderr.WriteLine($"unhealthy: {path} is not a heartbeat");
            return CliApp.AccountsFailed;
        }

        var staleAfter = DateTimeOffset.FromUnixTimeSeconds(seconds);
        if (DateTimeOffset.UtcNow > staleAfter)
        {
            stderr.WriteLine($"unhealthy: no cycle has ended since the one due before {staleAfter:yyyy-MM-dd HH:mm:ss} UTC");
            return CliApp.AccountsFailed;
        }

        stdout.WriteLine($"healthy: {string.Join("; ", lines.Skip(1).Where(l => l.Length > 0))}");
        return CliApp.Success;
    }
}
