using System.Diagnostics;
using System.Text;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>The real CLI, started as its own process with a chosen environment, as a user or cron would.</summary>
public sealed class CliProcess : IDisposable
{
    private static readonly string[] Settings =
    [
        "DATABASE_URL", "ETSY_CLIENT_ID", "ETSY_CLIENT_SECRET", "SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "LOG_LEVEL",
        "REFRESH_SCHEDULE", "REFRESH_INTERVAL_MINUTES", "ETSY_REFRESH_MARGIN_MINUTES", "SHOPIFY_API_VERSION", "ETSY_API_BASE_URL", "SHOPIFY_API_BASE_URL",
        "HTTP_TIMEOUT_SECONDS",
    ];

    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private CliProcess(Process process) => _process = process;

    public string Stdout { get { lock (_stdout) { return _stdout.ToString(); } } }

    public string Stderr { get { lock (_stderr) { return _stderr.ToString(); } } }

    public int Id => _process.Id;

    /// <summary>The CLI built alongside these tests (same configuration).</summary>
    public static string DllPath { get; } = Path.Combine(
        Repo.Root, "src", "TokenRefresh.Cli", "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name, "net10.0", "TokenRefresh.Cli.dll");

    public static CliProcess Start(string[] args, IReadOnlyDictionary<string, string?> environment, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo("dotnet", [DllPath, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        foreach (var key in Settings)
        {
            info.Environment.Remove(key);
        }

        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        var process = new Process { StartInfo = info };
        var cli = new CliProcess(process);
        process.OutputDataReceived += (_, e) => { lock (cli._stdout) { cli._stdout.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (cli._stderr) { cli._stderr.AppendLine(e.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return cli;
    }

    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(
        string[] args, IReadOnlyDictionary<string, string?> environment, string? workingDirectory = null)
    {
        using var cli = Start(args, environment, workingDirectory);
        var code = await cli.WaitForExitAsync(TimeSpan.FromMinutes(2));
        return (code, cli.Stdout, cli.Stderr);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        _process.WaitForExit(); // drains the redirected streams
        return _process.ExitCode;
    }

    /// <summary>Waits until the output holds <paramref name="text"/> (the CLI's own signal that it got there).</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (!Stdout.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"The CLI exited with {_process.ExitCode} before printing '{text}'.");
            }

            await Task.Delay(20, cts.Token);
        }
    }

    public void Signal(int signal) => _ = Kill(_process.Id, signal);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }
}
