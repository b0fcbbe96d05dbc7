using System.Diagnostics;
using System.Globalization;
using Npgsql;

namespace TokenRefresh.Availability;

/// <summary>The day's size and pace. The defaults are the short run that ./scripts/test.sh asserts.</summary>
internal sealed record DayOptions
{
    public required string AdminUrl { get; init; }
    public required string PgDir { get; init; }
    public required string BouncerDir { get; init; }
    public int EtsyUsers { get; init; } = 300;
    public int Stores { get; init; } = 300;
    public int ExpiringStores { get; init; } = 100;
    public int TokenSeconds { get; init; } = 90;
    public int CycleSeconds { get; init; } = 5;
    public int SegmentSeconds { get; init; } = 20;
    public int WarmupSeconds { get; init; } = 30;
    public int OutageSeconds { get; init; } = 75;

    /// <summary>SHOPIFY_VALIDATE_INTERVAL_MINUTES.</summary>
    public int ValidateMinutes { get; init; } = 1;

    /// <summary>ETSY_MAX_REQUESTS_PER_SECOND: low enough that the tokens expired in the outage make a backlog; null: Etsy's 10/s scaled to the day.</summary>
    public int? EtsyRate { get; init; } = 30;
    public int StormSeconds { get; init; } = 10;
    public int HttpTimeoutSeconds { get; init; } = 2;
    public int LatencyMs { get; init; } = 20;
    public double SampleSeconds { get; init; } = 1;
    public double ReconnectEverySeconds { get; init; } = 1;
    public string? ReportPath { get; init; }
    public bool Assert { get; init; }

    public static DayOptions Parse(string[] args)
    {
        if (args.Length < 3)
        {
            throw new ArgumentException("usage: ADMIN_URL PG_DIR BOUNCER_DIR [--etsy N] [--stores N] [--expiring N] [--token-seconds S] [--cycle-seconds C] [--segment-seconds L] [--warmup-seconds W] [--outage-seconds O] [--validate-minutes V] [--etsy-rate R] [--storm-seconds W] [--http-timeout-seconds T] [--latency-ms M] [--sample-seconds X] [--reconnect-every-seconds R] [--report FILE] [--assert]");
        }

        var o = new DayOptions { AdminUrl = args[0], PgDir = args[1], BouncerDir = args[2] };
        for (var i = 3; i < args.Length; i++)
        {
            string Value() => ++i < args.Length ? args[i] : throw new ArgumentException($"{args[i - 1]} needs a value");
            int Int() => int.Parse(Value(), CultureInfo.InvariantCulture);
            double Real() => double.Parse(Value(), CultureInfo.InvariantCulture);
            o = args[i] switch
            {
                "--etsy" => o with { EtsyUsers = Int() },
                "--stores" => o with { Stores = Int() },
                "--expiring" => o with { ExpiringStores = Int() },
                "--token-seconds" => o with { TokenSeconds = Int() },
                "--cycle-seconds" => o with { CycleSeconds = Int() },
                "--segment-seconds" => o with { SegmentSeconds = Int() },
                "--warmup-seconds" => o with { WarmupSeconds = Int() },
                "--outage-seconds" => o with { OutageSeconds = Int() },
                "--validate-minutes" => o with { ValidateMinutes = Int() },
                "--etsy-rate" => o with { EtsyRate = Value() is "scaled" ? null : int.Parse(args[i], CultureInfo.InvariantCulture) },
                "--storm-seconds" => o with { StormSeconds = Int() },
                "--http-timeout-seconds" => o with { HttpTimeoutSeconds = Int() },
                "--latency-ms" => o with { LatencyMs = Int() },
                "--sample-seconds" => o with { SampleSeconds = Real() },
                "--reconnect-every-seconds" => o with { ReconnectEverySeconds = Real() },
                "--report" => o with { ReportPath = Value() },
                "--assert" => o with { Assert = true },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }

        return o;
    }

    public static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TokenRefresh.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("TokenRefresh.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>
/// A fault of the day: when it began and ended, and whether it is an outage (the platform cannot serve) or not.
/// <see cref="Backlog"/>: an outage that outlasts the refresh margin, so tokens expire during it and a backlog waits at its end.
/// </summary>
internal sealed record Fault(string Name, DateTimeOffset Start, bool Outage, bool Backlog = false)
{
    public DateTimeOffset End { get; set; } = Start;
}

internal static class Db
{
    /// <summary>postgresql://user:password@host:port/db as Npgsql's builder.</summary>
    public static NpgsqlConnectionStringBuilder Builder(string url)
    {
        var uri = new Uri(url);
        var userInfo = uri.UserInfo.Split(':', 2);
        return new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host, Port = uri.Port, Database = uri.AbsolutePath.Trim('/'),
            Username = Uri.UnescapeDataString(userInfo[0]), Password = userInfo.Length > 1 ? Uri.UnescapeDataString(userInfo[1]) : null,
            Pooling = false, Timeout = 5, CommandTimeout = 30, // a fresh connection each time: the database restarts during the day
        };
    }

    public static string Url(NpgsqlConnectionStringBuilder b, int port, string user, string password) =>
        $"postgresql://{Uri.EscapeDataString(user)}:{Uri.EscapeDataString(password)}@{b.Host}:{port}/{b.Database}";

    /// <summary>A moment as the original schema's `timestamp` columns hold it: UTC, without a zone.</summary>
    public static string Utc(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
}

internal static class Shell
{
    public static async Task RunAsync(string script, params string[] args)
    {
        var info = new ProcessStartInfo(script) { UseShellExecute = false, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(script)} {string.Join(' ', args)} exited with {process.ExitCode}");
        }
    }
}
