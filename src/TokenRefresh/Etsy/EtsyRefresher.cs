using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Polly.Timeout;
using TokenRefresh.Persistence;

namespace TokenRefresh.Etsy;

/// <summary>Refreshes Etsy access tokens that expire within the margin, storing each rotated pair atomically.</summary>
internal sealed partial class EtsyRefresher(
    NpgsqlDataSource db,
    EtsyClient client,
    EtsyRateGate gate,
    IOptions<TokenRefreshOptions> options,
    TimeProvider time,
    ILogger<EtsyRefresher> logger) : IPlatformRefresher
{
    private const string StatePlatform = "etsy";

    public string Platform => "Etsy";

    public Outcome SuccessOutcome => Outcome.Refreshed;

    public async Task<IReadOnlyList<DueAccount>> FindDueAsync(CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT u.id AS Id, u.token_expires_at IS NULL AS NoExpiry
            FROM etsy_users u
            LEFT JOIN token_refresh_state s ON s.platform = '{StatePlatform}' AND s.account_id = u.id
            WHERE u.refresh_token IS NOT NULL
              AND (u.token_expires_at <= @DueBefore OR u.token_expires_at IS NULL)
              AND {AccountState.EligibleSql("u.refresh_token")}
            ORDER BY u.token_expires_at NULLS LAST
            """;
        var now = time.GetUtcNow();
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(Guid Id, bool NoExpiry)>(
            new CommandDefinition(sql, new { DueBefore = now + options.Value.EtsyRefreshMargin, Now = now }, cancellationToken: cancellationToken));
        return rows.Select(r => new DueAccount(r.Id, Problem: r.NoExpiry ? "token_expires_at is NULL" : null)).ToList();
    }

    public async Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken cancellationToken)
    {
        if (!await gate.WaitAsync(deadline, cancellationToken))
        {
            return AccountResult.Skip("Etsy asked to pause (429 Retry-After) past this cycle's budget");
        }

        // The lock is held from the re-check until the new pair is stored, so no other process sends the same refresh token.
        var claimSql = $"""
            SELECT u.refresh_token AS Token, {AccountState.Columns}
            FROM etsy_users u
            LEFT JOIN token_refresh_state s ON s.platform = '{StatePlatform}' AND s.account_id = u.id
            WHERE u.id = @Id AND u.refresh_token IS NOT NULL AND u.token_expires_at <= @DueBefore
              AND {AccountState.EligibleSql("u.refresh_token")}
            FOR UPDATE OF u SKIP LOCKED
            """;
        var now = time.GetUtcNow();
        await using var claim = await LockedRow<ClaimedToken>.ClaimAsync(
            db, claimSql, new { account.Id, DueBefore = now + options.Value.EtsyRefreshMargin, Now = now }, cancellationToken);
        if (claim is null)
        {
            return AccountResult.Skip("no longer due, backing off, or being refreshed by another process");
        }

        var sent = claim.Row.Token;
        var result = await client.RefreshAsync(sent, cancellationToken);
        if (result.Status == CallStatus.Ok)
        {
            var pair = result.Value!;
            if (pair.LifetimeAssumed)
            {
                Log.LifetimeAssumed(logger, account.Id, EtsyClient.AssumedLifetime.TotalMinutes);
            }

            return await StoreAsync(claim, account, sent, pair, deadline);
        }

        if (result.Status == CallStatus.Transient && result.Reason == "rate_limited" && result.RetryAfter is { } retryAfter)
        {
            gate.Pause(retryAfter);
        }

        var (state, failure) = claim.Row.State.Failed(
            result.Status, result.Reason!, result.OutcomeUnknown, result.RetryAfter, AccountState.Hash(sent), time.GetUtcNow(), options.Value.UnknownOutcomeWait);
        try
        {
            // Saved before the lock is released, so no other process calls Etsy before the backoff is visible.
            await state.SaveAsync(claim.Connection, claim.Transaction, StatePlatform, account.Id, time.GetUtcNow(), CancellationToken.None);
            await claim.CommitAsync(CancellationToken.None);
        }
        catch (NpgsqlException e)
        {
            Log.StateNotSaved(logger, e, account.Id);
        }

        return failure;
    }

    /// <summary>
    /// Stores the rotated pair and clears the account's failure state in one statement. The first attempt runs in
    /// the claim's transaction; if the connection drops or the database restarts, later attempts run on new
    /// connections, guarded so they write only over the token that was sent (or the pair itself, when a commit
    /// succeeded but its acknowledgement was lost), until the cycle's budget ends.
    /// </summary>
    private async Task<AccountResult> StoreAsync(LockedRow<ClaimedToken> claim, DueAccount account, string sent, TokenPair pair, DateTimeOffset deadline)
    {
        var sql = $"""
            WITH stored AS (
                UPDATE etsy_users
                SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = @ExpiresAt, updated_at = @Now
                WHERE id = @Id AND refresh_token IN (@Sent, @RefreshToken)
                RETURNING id)
            INSERT INTO token_refresh_state AS s (platform, account_id, last_success_at, updated_at)
            SELECT '{StatePlatform}', id, @Now, @Now FROM stored
            ON CONFLICT (platform, account_id) DO UPDATE SET
                consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
                token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at
            RETURNING 1
            """;
        var now = time.GetUtcNow();
        var parameters = new { account.Id, pair.AccessToken, pair.RefreshToken, Sent = sent, ExpiresAt = now + pair.ExpiresIn, Now = now };
        var attempts = 1;
        int? stored;
        try
        {
            try
            {
                stored = await claim.Connection.ExecuteScalarAsync<int?>(new CommandDefinition(sql, parameters, claim.Transaction));
                await claim.CommitAsync(CancellationToken.None);
            }
            catch (Exception e) when (DatabaseRetry.IsTransient(e))
            {
                // Release the row first: a retry on another connection must not wait for this aborted transaction's lock.
                await claim.DisposeAsync();
                var window = deadline - time.GetUtcNow() > DatabaseRetry.MinimumWindow ? deadline - time.GetUtcNow() : DatabaseRetry.MinimumWindow;
                stored = await DatabaseRetry.Pipeline(time, window).ExecuteAsync(async ct =>
                {
                    attempts++;
                    await using var connection = await db.OpenConnectionAsync(ct);
                    return await connection.ExecuteScalarAsync<int?>(new CommandDefinition(sql, parameters, cancellationToken: ct));
                }, CancellationToken.None);
                Log.StoredAfterRetries(logger, account.Id, attempts);
            }
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutRejectedException)
        {
            Log.ReceivedButNotStored(logger, e, account.Id, attempts);
            return AccountResult.PermanentFailure("received_but_not_stored");
        }

        if (stored is null)
        {
            // The row holds neither the sent token nor the new one: the main application stored another meanwhile.
            Log.Superseded(logger, account.Id);
            return AccountResult.Skip("superseded: a newer token was stored meanwhile");
        }

        return AccountResult.Success(Outcome.Refreshed);
    }

    private static partial class Log
    {
        [LoggerMessage(101, LogLevel.Warning, "Etsy account {AccountId}: expires_in was missing or implausible; assuming {AssumedMinutes} minutes")]
        public static partial void LifetimeAssumed(ILogger logger, Guid accountId, double assumedMinutes);

        [LoggerMessage(102, LogLevel.Critical, "Etsy account {AccountId}: a rotated token pair was received but not stored after {Attempts} attempts; the user may have to re-authorise")]
        public static partial void ReceivedButNotStored(ILogger logger, Exception exception, Guid accountId, int attempts);

        [LoggerMessage(103, LogLevel.Warning, "Etsy account {AccountId}: the rotated pair was stored after {Attempts} attempts")]
        public static partial void StoredAfterRetries(ILogger logger, Guid accountId, int attempts);

        [LoggerMessage(104, LogLevel.Error, "Etsy account {AccountId}: the rotated pair was discarded because a newer token was stored meanwhile")]
        public static partial void Superseded(ILogger logger, Guid accountId);

        [LoggerMessage(105, LogLevel.Error, "Etsy account {AccountId}: its failure state could not be saved; it will be tried again without backoff")]
        public static partial void StateNotSaved(ILogger logger, Exception exception, Guid accountId);
    }
}
