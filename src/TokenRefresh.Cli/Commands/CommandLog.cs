using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Cli.Commands;

/// <summary>What the operators' commands log when the database cannot be used.</summary>
internal static partial class CommandLog
{
    public static int DatabaseFailed(IServiceProvider services, Exception exception, string command)
    {
        Failed(services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Cli"), exception, command);
        return CliApp.CannotRun;
    }

    [LoggerMessage(205, LogLevel.Error, "{Command} failed: the database could not be used")]
    private static partial void Failed(ILogger logger, Exception exception, string command);
}
