using System.Diagnostics;
using System.Globalization;

namespace TokenRefresh.Availability;

/// <summary>
/// One `tokenrefresh` process, as a container runs it: its output goes to a file, its CPU time is read from /proc, and
/// what it proves is counted: the cycles it completed, and whether it ever exited when nobody stopped it.
/// </summary>
internal sealed class Replica
{
    /// <summary>The line `run` logs at the end of each cycle, whatever the cycle's outcome.</summary>
    private const string CycleCompleted = "Refresh cycle completed";

    private static readonly List<Replica> All = [];
    private readonly Process _process;
    private readonly StreamWriter _log;
    private readonly Queue<string> _lastLines = new();
    private double _cpuSeconds;
    private int _cycles;
    private bool _stopped;

    private Replica(string name, Process process, StreamWriter log)
    {
        Name = name;
        _process = process;
        _log = log;
    }

    public string Name { get; }

    /// <summary>The cycles this replica logged as completed.</summary>
    public int Cycles => Volatile.Read(ref _cycles);

    /// <summary>Its process id, which its leases name (lease_holder is "host/pid/...").</summary>
    public int ProcessId => _process.Id;

    /// <summary>Every replica started so far.</summary>
    public static IReadOnlyList<Replica> Started
    {
        get
        {
            lock (All)
            {
                return [.. All];
            }
        }
    }

    /// <summary>The CPU time of every replica started so far (those that ended: up to their last reading).</summary>
    public static double TotalCpuSeconds() => Started.Sum(r => r.ReadCpu());

    /// <summary>When it exited although nobody stopped or killed it: its exit code and its last lines; null while it runs or was stopped.</summary>
    public string? UnexpectedExit()
    {
        if (_stopped || !_process.HasExited)
        {
            return null;
        }

        lock (_lastLines)
        {
            return $"replica {Name} exited by itself with code {_process.ExitCode}; its last lines:\n    {string.Join("\n    ", _lastLines)}";
        }
    }

    public static Replica Start(string name, string cli, IReadOnlyDictionary<string, string?> settings, string work)
    {
        var process = new Process { StartInfo = Info(cli, ["run"], settings, work) };
        process.StartInfo.RedirectStandardOutput = true;
        process.StartInfo.RedirectStandardError = true;
        var log = new StreamWriter(Path.Combine(work, $"replica-{name}.log")) { AutoFlush = true };
        var replica = new Replica(name, process, log);
        process.OutputDataReceived += (_, e) => replica.Write(e.Data);
        process.ErrorDataReceived += (_, e) => replica.Write(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
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

    /// <summary>SIGSTOP (true) or SIGCONT (false): a frozen replica changes nothing in the database while it is looked at.</summary>
    public void Freeze(bool frozen)
    {
        using var signal = Process.Start("kill", [frozen ? "-STOP" : "-CONT", _process.Id.ToString(CultureInfo.InvariantCulture)]);
        signal.WaitForExit();
    }

    /// <summary>SIGKILL: no shutdown, requests in flight are cut.</summary>
    public void Kill()
    {
        _stopped = true;
        ReadCpu();
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>SIGTERM, as a container's stop: the replica finishes what it sent, and exits 0 (else: why not).</summary>
    public async Task<string?> StopAsync()
    {
        if (UnexpectedExit() is { } exited)
        {
            return exited;
        }

        if (_process.HasExited)
        {
            return null; // killed on purpose
        }

        _stopped = true;
        ReadCpu();
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await _process.WaitForExitAsync(timeout.Token);
        return _process.ExitCode == 0 ? null : $"replica {Name} exited with code {_process.ExitCode} on SIGTERM";
    }

    private void Write(string? line)
    {
        if (line is null)
        {
            return;
        }

        if (line.Contains(CycleCompleted, StringComparison.Ordinal))
        {
            Interlocked.Increment(ref _cycles);
        }

        lock (_lastLines)
        {
            _log.WriteLine(line);
            _lastLines.Enqueue(line);
            if (_lastLines.Count > 20)
            {
                _lastLines.Dequeue();
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
