using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace TokenRefresh.Cli;

/// <summary>One readable line per event ("12:00:03 WARN  message"), and the exception's stack trace below it.</summary>
internal sealed class CliConsoleFormatter(TimeProvider time) : ConsoleFormatter(FormatterName)
{
    public const string FormatterName = "tokenrefresh";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        var level = logEntry.LogLevel switch
        {
            LogLevel.Trace => "TRACE",
            LogLevel.Debug => "DEBUG",
            LogLevel.Information => "INFO ",
            LogLevel.Warning => "WARN ",
            LogLevel.Error => "ERROR",
            _ => "CRIT ",
        };
        textWriter.Write($"{time.GetUtcNow():HH:mm:ss} {level} {message}{Environment.NewLine}");
        if (logEntry.Exception is not null)
        {
            textWriter.Write($"{logEntry.Exception}{Environment.NewLine}");
        }
    }
}
