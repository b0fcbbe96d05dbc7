using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TokenRefresh;

/// <summary>
/// Says what became of each account of one cycle: its line in its own scope, its count in the metrics, and, for an
/// account only its user can bring back, a place in the cycle's re-authorisation webhook.
/// </summary>
internal sealed partial class AccountRecorder(ILogger logger, TokenRefreshMetrics metrics, bool logSuccess, TimeProvider time)
{
    /// <summary>The most events a cycle keeps for the webhook (a hundred requests): a cycle's memory does not grow with a wave of them.</summary>
    public const int MostReauthEvents = 100 * ReauthWebhook.BatchSize;

    private readonly ConcurrentQueue<ReauthEvent> _reauth = new();
    private int _reauthCount;

    /// <summary>The accounts that needed their user this cycle, for the webhook: the first <see cref="MostReauthEvents"/>.</summary>
    public IReadOnlyList<ReauthEvent> Reauth => [.. _reauth];

    /// <summary>How many more there were; the view and NOTIFY carry them.</summary>
    public int ReauthBeyond => Math.Max(0, Volatile.Read(ref _reauthCount) - MostReauthEvents);

    public IDisposable? Scope(PlatformInfo platform, DueAccount account) => logger.BeginScope(new Dictionary<string, object>
    {
        ["Platform"] = platform.Name,
        ["AccountId"] = account.Id,
    });

    /// <summary>Logs an account's outcome (in its scope, which the caller holds) and counts it; an outcome decided later, or deferred unfailed, is not yet one.</summary>
    public AccountResult Record(PlatformInfo platform, DueAccount account, AccountResult result)
    {
        if (result.Pending || (result.Deferred && result.Outcome != Outcome.Failed))
        {
            return result;
        }

        switch (result.Outcome)
        {
            case Outcome.Failed:
                Log.AccountFailed(logger, result.Quiet ? LogLevel.Debug : LogLevel.Error, platform.Name, account, result.Reason, result.Transient ? "transient" : "permanent");
                break;
            case Outcome.Skipped:
                Log.AccountSkipped(logger, platform.Name, account, result.Reason);
                break;
            case Outcome.Deactivated:
                Log.AccountDeactivated(logger, platform.Name, account, result.Reason);
                break;
            default:
                Log.AccountSucceeded(logger, logSuccess ? LogLevel.Information : LogLevel.Debug, platform.Name, account, result.Outcome.ToString().ToLowerInvariant());
                break;
        }

        if (result.NeedsUser || result.Outcome == Outcome.Deactivated)
        {
            Enqueue(new ReauthEvent(result.NeedsUser ? "needs_reauth" : "deactivated", platform.Id, account.Id,
                platform.LabelIsShopDomain ? account.Label : null, result.Reason, time.GetUtcNow()));
        }

        metrics.AccountProcessed(platform.Name, result);
        return result;
    }

    /// <summary>An account that needs its user although no call failed (its refresh token ends soon): for the webhook alone.</summary>
    public void NeedsUser(PlatformInfo platform, DueAccount account, string reason) =>
        Enqueue(new ReauthEvent("needs_reauth", platform.Id, account.Id, platform.LabelIsShopDomain ? account.Label : null, reason, time.GetUtcNow()));

    private void Enqueue(ReauthEvent reauth)
    {
        if (Interlocked.Increment(ref _reauthCount) <= MostReauthEvents)
        {
            _reauth.Enqueue(reauth);
        }
    }

    /// <summary>What an account that threw is: a database error (transient: nothing of it was half-written) or anything else.</summary>
    public AccountResult Crashed(PlatformInfo platform, DueAccount account, Exception e)
    {
        if (e is NpgsqlException)
        {
            // Nothing of this account's was half-written; the next account gets a fresh connection.
            Log.AccountDatabaseError(logger, e, platform.Name, account);
            return AccountResult.TransientFailure("database_error");
        }

        Log.AccountCrashed(logger, e, platform.Name, account);
        return AccountResult.PermanentFailure("unexpected_error");
    }

    private static partial class Log
    {
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

        [LoggerMessage(11, LogLevel.Error, "{Platform} {Account}: database error; this account's work was rolled back")]
        public static partial void AccountDatabaseError(ILogger logger, Exception exception, string platform, DueAccount account);
    }
}
