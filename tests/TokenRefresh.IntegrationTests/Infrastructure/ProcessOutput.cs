using System.Diagnostics;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>A tool the tests run to its end (a script, dotnet publish, the Bicep compiler): its exit code and output.</summary>
internal static class ProcessOutput
{
    public static (int ExitCode, string Stdout, string Stderr) Run(ProcessStartInfo info)
    {
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        using var process = Process.Start(info)!;
        // Both streams read at once: a tool that fills one while the other is awaited would never end.
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result, stderr);
    }
}
