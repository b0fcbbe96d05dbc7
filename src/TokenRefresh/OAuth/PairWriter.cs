using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using Polly.Timeout;
using TokenRefresh.Persistence;

namespace TokenRefresh.OAuth;

internal enum WriteResult
{
    Stored,

    /// <summary>The row no longer holds the token that was sent: someone stored another meanwhile.</summary>
    Superseded,

    /// <summary>Every attempt failed until the budget ended: the pair is lost (logged at Critical).</summary>
    NotStored,
}

/// <summary>
/// Writes a rotated pair, whose answer is its only copy, retrying with backoff until the cycle's budget ends
/// (at least 30 s), each attempt on a connection from the pool (a broken one is replaced), in one autocommit
/// statement, so no transaction is ever left open between attempts.
/// The statement must be guarded so that a retry writes only over the token that was sent, or over the
/// pair itself when a commit succeeded but its acknowledgement was lost; it returns a row when it wrote.
/// </summary>
internal sealed partial class PairWriter(NpgsqlDataSource db, TimeProvider time, ILogger<PairWriter> logger)
{
    public async Task<WriteResult> WriteAsync(string sql, object parameters, DateTimeOffset deadline, string platform, DueAccount account)
    {
        var attempts = 0;
        int? written;
        try
        {
            // The first attempt is bounded by the command timeout; the retries by the cycle's budget, at least 30 s.
            written = await DatabaseRetry.OnceThenRetriedAsync(
                ct =>
                {
                    attempts++;
                    return WriteOnceAsync(sql, parameters, ct);
                },
                () =>
                {
                    var left = deadline - time.GetUtcNow();
                    return DatabaseRetry.Pipeline(time, left > DatabaseRetry.MinimumWindow ? left : DatabaseRetry.MinimumWindow);
                },
                CancellationToken.None);
            if (attempts > 1)
            {
                Log.StoredAfterRetries(logger, platform, account, attempts);
            }
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutRejectedException)
        {
            Log.ReceivedButNotStored(logger, e, platform, account, attempts, DatabaseRetry.WhatToFix(e is TimeoutRejectedException { InnerException: { } inner } ? inner : e));
            return WriteResult.NotStored;
        }

        if (written is null)
        {
            Log.Superseded(logger, platform, account);
            return WriteResult.Superseded;
        }

        return WriteResult.Stored;
    }

    private async ValueTask<int?> WriteOnceAsync(string sql, object parameters, CancellationToken cancellationToken)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<int?>(new CommandDefinition(sql, parameters, cancellationToken: cancellationToken));
    }

    private static partial class Log
    {
        [LoggerMessage(102, LogLevel.Critical, "{Platform} {Account}: a rotated token pair was received but not stored after {Attempts} attempts ({Fix}); the user may have to re-authorise")]
        public static partial void ReceivedButNotStored(ILogger logger, Exception exception, string platform, DueAccount account, int attempts, string fix);

        [LoggerMessage(103, LogLevel.Warning, "{Platform} {Account}: the rotated pair was stored after {Attempts} attempts")]
        public static partial void StoredAfterRetries(ILogger logger, string platform, DueAccount account, int attempts);

        [LoggerMessage(104, LogLevel.Error, "{Platform} {Account}: the rotated pair was discarded because a newer token was stored meanwhile")]
        public static partial void Superseded(ILogger logger, string platform, DueAccount account);
    }
}
