using Microsoft.Extensions.Logging;

namespace TokenRefresh;

public sealed partial class RefreshCycle
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Refresh cycle started")]
        public static partial void CycleStarted(ILogger logger);

        [LoggerMessage(EventId = 10, Message = "Refresh cycle completed in {DurationMs} ms. {Summary}")]
        public static partial void CycleCompleted(ILogger logger, LogLevel level, double durationMs, string summary);
    }
}
