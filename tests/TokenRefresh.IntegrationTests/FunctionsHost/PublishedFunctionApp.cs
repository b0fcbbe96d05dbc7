using System.Diagnostics;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests.FunctionsHost;

/// <summary>
/// The Function app as the Dockerfile publishes it: ./scripts/test.sh publishes it once (scripts/check-images.sh)
/// and passes the folder in TEST_FUNCTIONS_APP_DIR; a plain `dotnet test` publishes it here, once per run.
/// </summary>
internal static class PublishedFunctionApp
{
    private static readonly Lazy<string> DirectoryValue = new(PublishOrReuse);

    public static string Directory => DirectoryValue.Value;

    private static string PublishOrReuse()
    {
        if (Environment.GetEnvironmentVariable("TEST_FUNCTIONS_APP_DIR") is { Length: > 0 } dir)
        {
            return File.Exists(Path.Combine(dir, "TokenRefresh.Functions.dll"))
                ? dir
                : throw new InvalidOperationException($"TEST_FUNCTIONS_APP_DIR ({dir}) holds no TokenRefresh.Functions.dll");
        }

        var output = Path.Combine(Path.GetTempPath(), $"tokenrefresh-functions-{Environment.ProcessId}");
        // The Dockerfile's command (scripts/check-images.sh runs the same one).
        using var process = Process.Start(new ProcessStartInfo("dotnet",
            ["publish", Repo.File("src", "TokenRefresh.Functions", "TokenRefresh.Functions.csproj"), "-c", "Release", "-o", output, "-nologo", "-v", "quiet"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => System.IO.Directory.Delete(output, recursive: true);
        return process.ExitCode == 0 ? output : throw new InvalidOperationException($"dotnet publish failed:\n{stdout.Result}\n{stderr}");
    }
}
