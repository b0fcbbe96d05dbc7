using System.Diagnostics;
using System.Runtime.InteropServices;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// The Function app and the CLI as the Dockerfile publishes them: ./scripts/test.sh publishes them once
/// (scripts/check-images.sh) and passes the folders in TEST_FUNCTIONS_APP_DIR and TEST_CLI_APP_DIR; a plain
/// `dotnet test` publishes each here when a test first needs it, once per run.
/// </summary>
internal static class PublishedApps
{
    private static readonly Lazy<string> FunctionAppValue = new(() => PublishOrReuse("TEST_FUNCTIONS_APP_DIR", "TokenRefresh.Functions", "TokenRefresh.Functions.dll", []));
    private static readonly Lazy<string> CliValue = new(() => PublishOrReuse("TEST_CLI_APP_DIR", "TokenRefresh.Cli", "TokenRefresh.Cli",
        ["-a", RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "arm64" : "amd64"]));

    public static string FunctionApp => FunctionAppValue.Value;

    /// <summary>The image's CLI program (its own .NET, compiled ahead of time, as `tokenrefresh` runs in the image).</summary>
    public static string Cli => Path.Combine(CliValue.Value, "TokenRefresh.Cli");

    private static string PublishOrReuse(string variable, string project, string entry, string[] platform)
    {
        if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } dir)
        {
            return File.Exists(Path.Combine(dir, entry)) ? dir : throw new InvalidOperationException($"{variable} ({dir}) holds no {entry}");
        }

        var output = Path.Combine(Path.GetTempPath(), $"{project.ToLowerInvariant()}-{Environment.ProcessId}");
        // The Dockerfile's command (scripts/check-images.sh runs the same one).
        var (code, stdout, stderr) = ProcessOutput.Run(new ProcessStartInfo("dotnet",
            ["publish", Repo.File("src", project, $"{project}.csproj"), "-c", "Release", .. platform, "-o", output, "-nologo", "-v", "quiet"]));
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Directory.Delete(output, recursive: true);
        return code == 0 ? output : throw new InvalidOperationException($"dotnet publish failed:\n{stdout}\n{stderr}");
    }
}
