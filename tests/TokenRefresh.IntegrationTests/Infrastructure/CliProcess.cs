using System.Diagnostics;
using System.Text;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// The real CLI, started as its own process, as a user or cron would: with a scrubbed environment (no setting of the
/// test machine's, only the test's) and in a directory of its own (an empty one unless the test gives one, so no
/// stray .env is read).
/// </summary>
public sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private readonly DirectoryInfo? _ownDirectory;

    private CliProcess(Process process, DirectoryInfo? ownDirectory)
    {
        _process = process;
        _ownDirectory = ownDirectory;
    }

    public string Stdout { get { lock (_stdout) { return _stdout.ToString(); } } }

    public string Stderr { get { lock (_stderr) { return _stderr.ToString(); } } }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The CLI built alongside these tests (same configuration).</summary>
    public static string DllPath { get; } = Path.Combine(
        Repo.Root, "src", "TokenRefresh.Cli", "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name, "net10.0", "TokenRefresh.Cli.dll");

    /// <summary>Starts the CLI built alongside these tests, or <paramref name="program"/> (the image's: PublishedApps.Cli).</summary>
    public static CliProcess Start(string[] args, IReadOnlyDictionary<string, string?> environment, string? workingDirectory = null, string? program = null)
    {
        var own = workingDirectory is null ? Directory.CreateTempSubdirectory("tokenrefresh-cli-") : null;
        var info = new ProcessStartInfo(program ?? "dotnet", program is null ? [DllPath, .. args] : args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? own!.FullName,
        };
        ServiceEnvironment.Apply(info, environment);

        var process = new Process { StartInfo = info };
        var cli = new CliProcess(process, own);
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
    public Task WaitForOutputAsync(string text, TimeSpan timeout) => WaitForOutputAsync(text, 1, timeout);

    /// <summary>Waits until standard output holds <paramref name="text"/> at least <paramref name="times"/> times.</summary>
    public async Task WaitForOutputAsync(string text, int times, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (Stdout.Split(text).Length - 1 < times)
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
        _ownDirectory?.Delete(recursive: true);
    }
}
