using Microsoft.Extensions.Logging;

namespace TokenRefresh;

public sealed partial class RefreshCycle
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Refresh cycle started")]
        public static partial void CycleStarted(ILogger logger);

        [LoggerMessage(2, LogLevel.Information, "{Platform}: found {Count} accounts due")]
        public static partial void Found(ILogger logger, string platform, int count);

        // At Information or Debug (LOG_ACCOUNT_SUCCESS): one per account per cycle is most of a large deployment's traces.
        [LoggerMessage(EventId = 3, Message = "{Platform} {Account}: {Outcome}")]
        public static partial void AccountSucceeded(ILogger logger, LogLevel level, string platform, DueAccount account, string outcome);

        // At Error, or at Debug for a failure its platform sums up in one line for the cycle (AccountResult.Quiet).
        [LoggerMessage(EventId = 4, Message = "{Platform} {Account}: failed ({Reason}, {FailureKind}); its token is unchanged")]
        public static partial void AccountFailed(ILogger logger, LogLevel level, string platform, DueAccount account, string? reason, string failureKind);

        [LoggerMessage(5, LogLevel.Warning, "{Platform} {Account}: skipped ({Reason})")]
        public static partial void AccountSkipped(ILogger logger, string platform, DueAccount account, string? reason);

        [LoggerMessage(6, LogLevel.Warning, "{Platform} {Account}: deactivated ({Reason})")]
        public static partial void AccountDeactivated(ILogger logger, string platform, DueAccount account, string? reason);

        [LoggerMessage(7, LogLevel.Error, "{Platform} {Account}: failed with an unexpected error; its token is unchanged")]
        public static partial void AccountCrashed(ILogger logger, Exception exception, string platform, DueAccount account);

        [LoggerMessage(8, LogLevel.Error, "{Platform}: the cycle could not run; it will be retried")]
        public static partial void PlatformFailed(ILogger logger, Exception exception, string platform);

        [LoggerMessage(14, LogLevel.Error, "{Platform}: the cycle could not run: the database server's TLS certificate was refused ({Reason}): check sslrootcert (the provider's CA certificate) and the host name in DATABASE_URL; it will be retried")]
        public static partial void DatabaseCertificateRefused(ILogger logger, Exception exception, string platform, string reason);

        [LoggerMessage(12, LogLevel.Error, "{Platform}: the cycle could not run: a table is missing (run `tokenrefresh migrate` for the service's own table); it will be retried")]
        public static partial void TableMissing(ILogger logger, Exception exception, string platform);

        [LoggerMessage(13, LogLevel.Error, "{Platform}: the cycle could not run: {Problem}; it will be retried")]
        public static partial void SchemaProblem(ILogger logger, string platform, string problem);

        [LoggerMessage(9, LogLevel.Warning, "{Platform}: {Reason}, {LeftOver} accounts left for the next cycle")]
        public static partial void Stopping(ILogger logger, string platform, string reason, int leftOver);

        [LoggerMessage(11, LogLevel.Error, "{Platform} {Account}: database error; this account's work was rolled back")]
        public static partial void AccountDatabaseError(ILogger logger, Exception exception, string platform, DueAccount account);

        [LoggerMessage(EventId = 10, Message = "Refresh cycle completed in {DurationMs} ms. {Summary}")]
        public static partial void CycleCompleted(ILogger logger, LogLevel level, double durationMs, string summary);
    }
}
