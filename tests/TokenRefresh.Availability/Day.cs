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
    public int OutageSeconds { get; init; } = 15;
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
            throw new ArgumentException("usage: ADMIN_URL PG_DIR BOUNCER_DIR [--etsy N] [--stores N] [--expiring N] [--token-seconds S] [--cycle-seconds C] [--segment-seconds L] [--warmup-seconds W] [--outage-seconds O] [--storm-seconds W] [--http-timeout-seconds T] [--latency-ms M] [--sample-seconds X] [--reconnect-every-seconds R] [--report FILE] [--assert]");
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

/// <summary>A fault of the day: when it began and ended, and whether it is an outage (the platform cannot serve) or not.</summary>
internal sealed record Fault(string Name, DateTimeOffset Start, bool Outage)
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

/// <summary>One `tokenrefresh` process, as a container runs it; its output goes to a file, its CPU time is read from /proc.</summary>
internal sealed class Replica
{
    private static readonly List<Replica> All = [];
    private readonly Process _process;
    private readonly StreamWriter _log;
    private double _cpuSeconds;

    private Replica(string name, Process process, StreamWriter log)
    {
        Name = name;
        _process = process;
        _log = log;
    }

    public string Name { get; }

    /// <summary>The CPU time of every replica started so far (those that ended: up to their last reading).</summary>
    public static double TotalCpuSeconds()
    {
        lock (All)
        {
            return All.Sum(r => r.ReadCpu());
        }
    }

    public static Replica Start(string name, string cli, IReadOnlyDictionary<string, string?> settings, string work)
    {
        var process = new Process { StartInfo = Info(cli, ["run"], settings, work) };
        process.StartInfo.RedirectStandardOutput = true;
        process.StartInfo.RedirectStandardError = true;
        var log = new StreamWriter(Path.Combine(work, $"replica-{name}.log")) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => Write(log, e.Data);
        process.ErrorDataReceived += (_, e) => Write(log, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var replica = new Replica(name, process, log);
        lock (All)
        {
            All.Add(replica);
        }

        return replica;
    }

    public static async Task<int> RunToEndAsync(string cli, string[] args, Dictionary<string, string?> settings, string work)
    {
        using var process = Process.Start(Info(cli, args, settings, work))!;
        await process.WaitForExitAsync();
        return process.ExitCode;
    }

    /// <summary>SIGKILL: no shutdown, requests in flight are cut.</summary>
    public void Kill()
    {
        ReadCpu();
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>SIGTERM, as a container's stop: the replica finishes what it sent.</summary>
    public async Task StopAsync()
    {
        if (_process.HasExited)
        {
            return;
        }

        ReadCpu();
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await _process.WaitForExitAsync(timeout.Token);
    }

    private static void Write(StreamWriter log, string? line)
    {
        if (line is not null)
        {
            lock (log)
            {
                log.WriteLine(line);
            }
        }
    }

    // utime + stime of a live process, in seconds (fields 14 and 15 of /proc/PID/stat, in clock ticks of 1/100 s).
    private double ReadCpu()
    {
        try
        {
            if (!_process.HasExited)
            {
                var stat = File.ReadAllText($"/proc/{_process.Id}/stat");
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                _cpuSeconds = (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
            }
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            // It ended between the check and the read: its last reading stands.
        }

        return _cpuSeconds;
    }

    private static ProcessStartInfo Info(string cli, string[] args, IReadOnlyDictionary<string, string?> settings, string work)
    {
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = work, UseShellExecute = false };
        info.ArgumentList.Add(cli);
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        // Only what a container would have: no setting of this shell leaks in (the working directory has no .env).
        info.Environment.Clear();
        foreach (var name in new[] { "PATH", "HOME", "DOTNET_ROOT", "DOTNET_CLI_TELEMETRY_OPTOUT", "DOTNET_NOLOGO" })
        {
            if (Environment.GetEnvironmentVariable(name) is { } value)
            {
                info.Environment[name] = value;
            }
        }

        foreach (var (key, value) in settings)
        {
            info.Environment[key] = value;
        }

        return info;
    }
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
