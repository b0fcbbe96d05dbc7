using System.Collections;
using System.Runtime.InteropServices;

namespace TokenRefresh.Cli;

/// <summary>
/// The CLI's runtime configuration leaves tiered compilation off (TokenRefresh.Cli.csproj): a command that does its work
/// and exits (`once`, `status`, `health`) spends less CPU running the code compiled ahead of time than compiling it again
/// as it warms up. `run` stays up for days, where the re-compiled code costs about 40% less CPU a call: before anything
/// else, it replaces itself (same process, arguments and output) with the same command, tiered compilation on.
/// </summary>
internal static partial class Tiering
{
    private const string Variable = "DOTNET_TieredCompilation";

    /// <summary>
    /// Returns only if the command is not `run`, tiering is on already (a build for no platform), the choice was made
    /// (the variable is set), or exec failed.
    /// </summary>
    public static void OnForRun(string[] args)
    {
        var off = AppContext.GetData("System.Runtime.TieredCompilation") is string value && bool.TryParse(value, out var on) && !on;
        if (!off || !OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(Variable) is not null || Environment.ProcessPath is not { } host)
        {
            return;
        }

        if (Argv(host, typeof(Tiering).Assembly.Location, args) is { } argv)
        {
            var environment = Environment.GetEnvironmentVariables().Cast<DictionaryEntry>().Select(e => $"{e.Key}={e.Value}");
            try
            {
                _ = Exec(host, [.. argv, null], [.. environment, $"{Variable}=1", null]);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // Not glibc (the image is): as below.
            }
        }

        // exec failed (it does not return otherwise): `run` goes on as it is, compiled ahead of time.
    }

    /// <summary>The command line that starts `run` again: under `dotnet` with the program's .dll, or as the program itself.</summary>
    internal static string[]? Argv(string host, string entryAssembly, string[] args)
    {
        if (CliApp.WithoutProgramName(args) is not ["run", ..])
        {
            return null;
        }

        return Path.GetFileNameWithoutExtension(host) == "dotnet" ? [host, entryAssembly, .. args] : [host, .. args];
    }

    [LibraryImport("libc.so.6", EntryPoint = "execve", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Exec(string path, string?[] argv, string?[] envp);
}
