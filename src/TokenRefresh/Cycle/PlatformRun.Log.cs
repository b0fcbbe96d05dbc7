using Microsoft.Extensions.Logging;

namespace TokenRefresh;

internal sealed partial class PlatformRun
{
    private static partial class Log
    {
        [LoggerMessage(2, LogLevel.Information, "{Platform}: found {Count} accounts due")]
        public static partial void Found(ILogger logger, string platform, int count);

        [LoggerMessage(8, LogLevel.Error, "{Platform}: the cycle could not run; it will be retried")]
        public static partial void PlatformFailed(ILogger logger, Exception exception, string platform);

        [LoggerMessage(14, LogLevel.Error, "{Platform}: the cycle could not run: the database server's TLS certificate was refused ({Reason}): check sslrootcert (the provider's CA certificate) and the host name in DATABASE_URL; it will be retried")]
        public static partial void DatabaseCertificateRefused(ILogger logger, Exception exception, string platform, string reason);

        [LoggerMessage(12, LogLevel.Error, "{Platform}: the cycle could not run: a table is missing (run `tokenrefresh migrate` for the service's own table); it will be retried")]
        public static partial void TableMissing(ILogger logger, Exception exception, string platform);

        [LoggerMessage(13, LogLevel.Error, "{Platform}: the cycle could not run: {Problem}; it will be retried")]
        public static partial void SchemaProblem(ILogger logger, string platform, string problem);

        [LoggerMessage(17, LogLevel.Error, "{Platform}: not run: {Problem}; the other platforms are not affected")]
        public static partial void OptionalNotRun(ILogger logger, string platform, string problem);

        [LoggerMessage(18, LogLevel.Error, "{Platform}: the database could not be reached to claim accounts; the calls in flight finish, and the rest wait for the next cycle")]
        public static partial void ClaimFailed(ILogger logger, Exception exception, string platform);

        [LoggerMessage(9, LogLevel.Warning, "{Platform}: {Reason}, {LeftOver} accounts left for the next cycle")]
        public static partial void Stopping(ILogger logger, string platform, string reason, int leftOver);
    }
}
