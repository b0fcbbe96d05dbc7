using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Etsy;

/// <summary>Refreshes Etsy access tokens that expire within the margin, storing each rotated pair atomically.</summary>
internal sealed partial class EtsyRefresher(
    NpgsqlDataSource db,
    EtsyClient client,
    IOptions<TokenRefreshOptions> options,
    TimeProvider time,
    ILogger<EtsyRefresher> logger) : IPlatformRefresher
{
    public string Platform => "Etsy";

    public Outcome SuccessOutcome => Outcome.Refreshed;

    public async Task<IReadOnlyList<DueAccount>> FindDueAsync(CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT id AS Id, token_expires_at IS NULL AS NoExpiry
            FROM etsy_users
            WHERE refresh_token IS NOT NULL
              AND (token_expires_at <= @DueBefore OR token_expires_at IS NULL)
            ORDER BY token_expires_at NULLS LAST
            """;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(Guid Id, bool NoExpiry)>(
            new CommandDefinition(sql, new { DueBefore = DueBefore() }, cancellationToken: cancellationToken));
        return rows.Select(r => new DueAccount(r.Id, Problem: r.NoExpiry ? "token_expires_at is NULL" : null)).ToList();
    }

    public async Task<AccountResult> ProcessAsync(DueAccount account, CancellationToken cancellationToken)
    {
        // The lock is held from the re-check until the new pair is stored, so no other process sends the same refresh token.
        const string claimSql = """
            SELECT refresh_token
            FROM etsy_users
            WHERE id = @Id AND refresh_token IS NOT NULL AND token_expires_at <= @DueBefore
            FOR UPDATE SKIP LOCKED
            """;
        await using var claim = await LockedRow<string>.ClaimAsync(db, claimSql, new { account.Id, DueBefore = DueBefore() }, cancellationToken);
        if (claim is null)
        {
            return AccountResult.Skip("no longer due, or being refreshed by another process");
        }

        var result = await client.RefreshAsync(claim.Row, cancellationToken);
        if (result.Status != CallStatus.Ok)
        {
            return result.Status == CallStatus.Transient
                ? AccountResult.TransientFailure(result.Reason!)
                : AccountResult.PermanentFailure(result.Reason!);
        }

        var pair = result.Value!;
        if (pair.LifetimeAssumed)
        {
            Log.LifetimeAssumed(logger, account.Id, EtsyClient.AssumedLifetime.TotalMinutes);
        }

        return await StoreAsync(claim, account, pair);
    }

    private async Task<AccountResult> StoreAsync(LockedRow<string> claim, DueAccount account, TokenPair pair)
    {
        const string sql = """
            UPDATE etsy_users
            SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = @ExpiresAt, updated_at = @Now
            WHERE id = @Id
            """;
        var now = time.GetUtcNow();
        try
        {
            // Never cancelled: the response is the only copy of the rotated pair.
            await claim.ExecuteAsync(sql, new { account.Id, pair.AccessToken, pair.RefreshToken, ExpiresAt = now + pair.ExpiresIn, Now = now }, CancellationToken.None);
            await claim.CommitAsync(CancellationToken.None);
            return AccountResult.Success(Outcome.Refreshed);
        }
        catch (NpgsqlException e)
        {
            Log.ReceivedButNotStored(logger, e, account.Id);
            return AccountResult.PermanentFailure("received_but_not_stored");
        }
    }

    private DateTimeOffset DueBefore() => time.GetUtcNow() + options.Value.EtsyRefreshMargin;

    private static partial class Log
    {
        [LoggerMessage(101, LogLevel.Warning, "Etsy account {AccountId}: expires_in was missing or implausible; assuming {AssumedMinutes} minutes")]
        public static partial void LifetimeAssumed(ILogger logger, Guid accountId, double assumedMinutes);

        [LoggerMessage(102, LogLevel.Critical, "Etsy account {AccountId}: a rotated token pair was received but not stored; the user may have to re-authorise")]
        public static partial void ReceivedButNotStored(ILogger logger, Exception exception, Guid accountId);
    }
}
