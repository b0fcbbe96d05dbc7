using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Cli.Commands;

/// <summary>`tokenrefresh once [--metrics]`: one cycle, then exit with its result.</summary>
internal static class OnceCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var metrics = new Option<bool>("--metrics") { Description = "Print the service's metrics after the cycle" };
        var once = new Command("once", "Run one refresh cycle and exit (0: all accounts fine, 1: some failed, 2: could not run)") { metrics };
        once.SetAction((parse, _) => CliHost.RunAsync(stdout, stderr, logToStandardError: false, parse.GetValue(metrics), RunAsync));
        return once;
    }

    private static async Task<int> RunAsync(IServiceProvider services, Action? afterCycle, CancellationToken stopping)
    {
        try
        {
            await MigrateAtStart.TryAsync(services, services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Cli"), stopping);
            var summary = await services.GetRequiredService<RefreshCycle>().RunAsync(stopping);
            return summary.AnyFailed ? CliApp.AccountsFailed : CliApp.Success;
        }
        catch (CycleFailedException)
        {
            // Already logged with its stack trace by the cycle.
            return CliApp.CannotRun;
        }
        finally
        {
            afterCycle?.Invoke();
        }
    }
}
