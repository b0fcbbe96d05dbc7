using Microsoft.Extensions.Logging;

namespace TokenRefresh.OAuth;

internal sealed partial class OAuthCycle
{
    private static partial class Log
    {
        [LoggerMessage(107, LogLevel.Error, "{Platform} {Account}: something unexpected happened once the request may have been sent; the outcome is unknown, so the token is left as it is and not sent again before the in-flight wait")]
        public static partial void UnexpectedAfterSend(ILogger logger, Exception exception, string platform, DueAccount account);

        [LoggerMessage(108, LogLevel.Error, "{Platform}: the platform refused the app's credentials ({Reason}): check {Settings}. No more {Platform} calls this cycle, and no account is marked as failing for it")]
        public static partial void CredentialsRefused(ILogger logger, string platform, string reason, string settings);

        [LoggerMessage(101, LogLevel.Warning, "{Platform} {Account}: expires_in was missing or implausible; assuming {AssumedMinutes} minutes")]
        public static partial void LifetimeAssumed(ILogger logger, string platform, DueAccount account, double assumedMinutes);

        [LoggerMessage(105, LogLevel.Error, "{Platform} {Account}: its failure state could not be saved; it will be tried again without backoff")]
        public static partial void StateNotSaved(ILogger logger, Exception exception, string platform, DueAccount account);

        [LoggerMessage(109, LogLevel.Warning, "{Platform} {Account}: a claim of its token taken at {LeasedAt:HH:mm:ss} UTC ran out without an outcome (the process that held it stopped mid-call); that request may have rotated the token, so the first invalid_grant is not believed")]
        public static partial void LostLease(ILogger logger, string platform, DueAccount account, DateTimeOffset leasedAt);

        [LoggerMessage(112, LogLevel.Warning, "{Platform}: the daily quota the platform gave could not be stored for status; it is, with the next cycle's first permit")]
        public static partial void QuotaNotStored(ILogger logger, Exception exception, string platform);

        [LoggerMessage(115, LogLevel.Information, "{Platform}: after the platform's outage, {Accounts} accounts that waited because of it are due again")]
        public static partial void OutageWaitsLifted(ILogger logger, string platform, int accounts);

        [LoggerMessage(113, LogLevel.Debug, "{Platform} {Account}: sending the refresh request at {At:HH:mm:ss.fff} UTC")]
        public static partial void Sending(ILogger logger, string platform, DueAccount account, DateTimeOffset at);

        [LoggerMessage(110, LogLevel.Warning, "{Platform}: a 429's pause could not be shared with the other replicas through the database; this process pauses")]
        public static partial void PauseNotShared(ILogger logger, Exception exception, string platform);
    }
}
