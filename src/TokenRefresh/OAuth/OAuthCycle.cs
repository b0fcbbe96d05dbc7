using System.Runtime.CompilerServices;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;
using TokenRefresh.Settings;

namespace TokenRefresh.OAuth;

/// <summary>
/// One refresh platform's part of one cycle: find the accounts whose access token expires within the margin, claim
/// them with a lease, call the platform, and store the new pair, both expiries and the cleared failure state in one
/// statement; on failure record the backoff or the re-authorisation flag as the lease ends.
/// </summary>
internal sealed partial class OAuthCycle(
    IRefreshTokenPlatform platform,
    OAuthStatements sql,
    OAuthHousekeeping housekeeping,
    IndexAdvice advice,
    NpgsqlDataSource db,
    PairWriter writer,
    CycleSettings settings,
    TimeProvider time,
    PlatformHealth health,
    ILogger logger) : IPlatformCycle
{
    private int _credentialsRefused;
    private DueQueue? _due;
    private Batches<DueCandidate>? _noExpiry;

    public IPermits Permits => platform.RateLimit ?? (IPermits)NoRateLimit.Instance;

    /// <summary>The accounts whose refresh token's end was announced this cycle.</summary>
    public IReadOnlyList<(DueAccount Account, string Reason)> Announced { get; private set; } = [];

    // A lost answer cannot have spent a refresh token that does not rotate: no wait for it, and no invalid_grant doubted.
    private bool Rotates => platform.RefreshToken.Rotates;

    private TimeSpan UnknownOutcomeWait => Rotates ? settings.UnknownOutcomeWait : TimeSpan.Zero;

    public Task<int> CountDueAsync(CancellationToken cancellationToken) => DatabaseRetry.ReadAsync(time, async ct =>
    {
        var now = time.GetUtcNow();
        await using var connection = await db.OpenConnectionAsync(ct);
        await LiftOutageWaitsAsync(connection, now, ct);
        await sql.Leftovers.RemoveAsync(connection, now, platform.Info.Name, logger, ct);
        var announced = await housekeeping.RunAsync(connection, now, ct);
        Announced = [.. announced.Select(a => (a, "refresh_token_ending"))];
        // The claim once for no account: a new process's first claim is then as quick as the others, and a rate-limit
        // permit does not grow stale while it runs.
        await connection.ReadRowOrDefaultAsync<ClaimedToken>(new CommandDefinition(sql.Claim, ClaimParameters([], 0, now, "warm-up", now), cancellationToken: ct));
        return await advice.TimeAsync(connection, platform.Info.Name, () => connection.ExecuteScalarAsync<int>(
            new CommandDefinition(sql.CountDue, new { DueBefore = now + platform.Margin, Now = now }, cancellationToken: ct)), ct);
    }, cancellationToken).AsTask();

    // Once the platform answers again after an outage, the accounts its failures held back are due at once: an outage is
    // not their failure. (Taken before the statement runs: should it fail, their own short waits end soon anyway.)
    private async Task LiftOutageWaitsAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (health.TakeEndedOutage(platform.Info.Id) is { } from)
        {
            var lifted = await connection.ExecuteAsync(new CommandDefinition(AccountState.LiftOutageWaitsSql, new
            {
                Platform = platform.Info.Id, Since = from - settings.UnknownOutcomeWait, Now = now,
                Reasons = PlatformHealth.PlatformSideReasons, Prefix = PlatformHealth.ServerErrorPrefix,
            }, cancellationToken: cancellationToken));
            Log.OutageWaitsLifted(logger, platform.Info.Name, lifted);
        }
    }

    public async Task<IReadOnlyList<DueAccount>> NextAsync(int count, DateTimeOffset deadline, CancellationToken claiming)
    {
        var now = time.GetUtcNow();
        _due ??= new DueQueue(Pages(sql.DuePage, now, claiming), (ids, n) => ClaimRowsAsync(sql.Claim, ids, n, deadline));
        if (await _due.NextAsync(count) is { Count: > 0 } claimed)
        {
            return [.. claimed.Select(r => new DueAccount(r.Id, r.Label) { Claimed = r })];
        }

        // Then the rows without an expiry, skipped with a warning.
        _noExpiry ??= Pages(sql.NoExpiryPage, now, claiming);
        return [.. (await _noExpiry.NextAsync(Paging.PageSize)).Select(r => new DueAccount(r.Id, r.Label, "token_expires_at is NULL"))];
    }

    private Batches<DueCandidate> Pages(string page, DateTimeOffset now, CancellationToken cancellationToken) =>
        new(Paging.ReadAsync<DueCandidate>(last => DatabaseRetry.ReadAsync<IReadOnlyList<DueCandidate>>(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            return await connection.ReadRowsAsync<DueCandidate>(new CommandDefinition(
                page, new { DueBefore = now + platform.Margin, Now = now, AfterExpiry = last?.ExpiresAt, AfterId = last?.Id }, cancellationToken: ct));
        }, cancellationToken).AsTask()), cancellationToken);

    public async Task<DueAccount?> FindAccountAsync(string key, CancellationToken cancellationToken)
    {
        // A uuid key matches in any case.
        key = platform.Table.LookupColumn is null && Guid.TryParse(key, out var uuid) ? uuid.ToString() : key;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var rows = await connection.ReadRowsAsync<(string Id, string? Label)>(new CommandDefinition(sql.FindAccount, new { Key = key }, cancellationToken: cancellationToken));
        return rows switch
        {
            [] => null,
            [var r] => new DueAccount(r.Id, r.Label, platform.Problem(r.Label)) { Forced = true },
            // The main application's table does not make shop_domain unique: name no row rather than a random one.
            [var r, ..] => new DueAccount(r.Id, r.Label, $"{rows.Count} rows of {platform.Table.Name} match {key}") { Forced = true },
        };
    }

    public async Task<IReadOnlyList<Claim>> ClaimAsync(IReadOnlyList<DueAccount> accounts, DateTimeOffset deadline, CancellationToken claiming)
    {
        var rows = (await ClaimRowsAsync(sql.ForcedClaim, [.. accounts.Select(a => a.Id)], accounts.Count, deadline))
            .Where(r => r.Claimed).ToDictionary(r => r.Id, StringComparer.Ordinal);
        return [.. accounts.Select(a => rows.TryGetValue(a.Id, out var row)
            ? new Claim(a with { Claimed = row })
            : new Claim(null, AccountResult.Skip("not claimed: another process has it, or its token is in flight")))];
    }

    // Not cancelled: a claim that the server committed is always known to this process, which then ends it.
    private Task<IReadOnlyList<ClaimedToken>> ClaimRowsAsync(string statement, string[] ids, int count, DateTimeOffset deadline)
    {
        var parameters = ClaimParameters(ids, count, time.GetUtcNow(), AccountState.NewLeaseHolder(), deadline - settings.CycleBudget);
        return DatabaseRetry.ReadAsync<IReadOnlyList<ClaimedToken>>(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            return await connection.ReadRowsAsync<ClaimedToken>(new CommandDefinition(statement, parameters, cancellationToken: ct));
        }, CancellationToken.None).AsTask();
    }

    private object ClaimParameters(string[] ids, int count, DateTimeOffset now, string holder, DateTimeOffset cycleStart) => new
    {
        Ids = ids, Count = count, DueBefore = now + platform.Margin, Now = now, LeaseUntil = now + settings.LeaseLength, Holder = holder,
        UnknownOutcomeWait = UnknownOutcomeWait.TotalSeconds, CycleStart = cycleStart,
    };

    public async Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken claiming)
    {
        var claim = account.Claimed ?? throw new InvalidOperationException("The account is claimed first (ClaimAsync).");
        var sent = claim.Token;
        var hash = AccountState.Hash(sent);
        var state = claim.State;
        if (Rotates && claim.LeaseTokenHash == hash && claim.LeasedAt is { } leasedAt)
        {
            // A process claimed this token before, and stopped without an outcome: its request may have rotated it.
            Log.LostLease(logger, platform.Info.Name, account, leasedAt);
            state = state.AfterLostLease(hash, leasedAt);
        }

        // A permit is for its moment: if this call could not leave within the grace (a busy machine), it takes a new one
        // rather than go out beside the next call's, and waits for it with its lease.
        if (platform.RateLimit is { } rate && account.PermittedAt is { } permittedAt && time.GetElapsedTime(permittedAt) > Permit.Grace
            && await NewPermitAsync(rate, deadline, claiming) is { } notNow)
        {
            await ReleaseAsync(account, claim);
            return AccountResult.Skip(notNow);
        }

        // Not cancelled by shutdown: a request that was sent is answered and its pair stored. (Should anything throw
        // here, the lease runs out uncleared, and the next claim treats the attempt as unknown.)
        Log.Sending(logger, platform.Info.Name, account, time.GetUtcNow());
        var result = await platform.RefreshAsync(account.Label, sent, CancellationToken.None);
        var platformDown = health.Record(result.Reason);
        if (result.Status == Platforms.CallStatus.Ok)
        {
            return await StoreAsync(account, claim, sent, result.Value!, deadline);
        }

        if (result.Error is { } error)
        {
            Log.UnexpectedAfterSend(logger, error, platform.Info.Name, account);
        }

        if (result.CredentialsRefused)
        {
            return await CredentialsRefusedAsync(account, claim, result.Reason!);
        }

        if (result.Reason == "rate_limited" && result.RetryAfter is { } retryAfter && platform.RateLimit is { } limit)
        {
            await PauseAsync(limit, retryAfter);
        }

        var (next, failure) = state.Failed(
            result.Status, result.Reason!, result.OutcomeUnknown && Rotates, result.RetryAfter, hash, time.GetUtcNow(), UnknownOutcomeWait, platformDown,
            claim.AccessExpiresAt);
        return await SaveFailureAsync(account, claim, next, failure);
    }

    // The app's credentials, not this account: nothing is recorded against it, and no more calls of this platform start
    // this cycle; said once.
    private async Task<AccountResult> CredentialsRefusedAsync(DueAccount account, ClaimedToken claim, string reason)
    {
        await ReleaseAsync(account, claim);
        if (Interlocked.Exchange(ref _credentialsRefused, 1) == 0)
        {
            Log.CredentialsRefused(logger, platform.Info.Name, reason, platform.CredentialSettings);
        }

        return AccountResult.StopPlatform($"refused the app's credentials ({reason}): check {platform.CredentialSettings}");
    }

    // The lease ends with the failure recorded, so no other process calls the platform before the backoff is visible.
    private async Task<AccountResult> SaveFailureAsync(DueAccount account, ClaimedToken claim, AccountState next, AccountResult failure)
    {
        try
        {
            await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
            if (await next.SaveAsync(connection, sql.SaveState, platform.Info.Id, account.Id, time.GetUtcNow(), CancellationToken.None, claim.LeaseHolder) > 0)
            {
                return failure;
            }

            // The account was deleted meanwhile (or another process took the row over): nothing recorded, nothing announced.
            await ReleaseAsync(account, claim);
            return failure with { NeedsUser = false };
        }
        catch (NpgsqlException e)
        {
            Log.StateNotSaved(logger, e, platform.Info.Name, account);
            // Not flagged in the database, so not announced either: the next attempt decides again.
            return failure with { NeedsUser = false };
        }
    }

    public async Task<IReadOnlyList<(DueAccount Account, AccountResult Result)>> FinishAsync()
    {
        await DisposeAsync(_due);
        await DisposeAsync(_noExpiry);
        if (platform.RateLimit is { } limit)
        {
            try
            {
                await limit.StoreQuotaAsync();
            }
            catch (NpgsqlException e)
            {
                // Only the figure in status waits: the next cycle's first permit stores it.
                Log.QuotaNotStored(logger, e, platform.Info.Name);
            }
        }

        return [];
    }

    // The pages read ahead are let go (a fault reading them was reported where it was read).
    private static ValueTask DisposeAsync(IAsyncDisposable? pages) => pages?.DisposeAsync() ?? ValueTask.CompletedTask;

    // Nothing is sent yet, so a shutdown (or the end of claiming) ends this wait, which may last a whole 429 pause.
    private static async Task<string?> NewPermitAsync(SharedRateLimit rate, DateTimeOffset deadline, CancellationToken claiming)
    {
        try
        {
            return (await rate.WaitAsync(deadline, claiming)).NotNow;
        }
        catch (OperationCanceledException) when (claiming.IsCancellationRequested)
        {
            return "stopped before it was sent";
        }
    }

    private async Task PauseAsync(SharedRateLimit limit, TimeSpan retryAfter)
    {
        try
        {
            await limit.PauseAsync(retryAfter);
        }
        catch (NpgsqlException e)
        {
            // This process still pauses; the other replicas learn of it from their own 429s.
            Log.PauseNotShared(logger, e, platform.Info.Name);
        }
    }

    private async Task ReleaseAsync(DueAccount account, ClaimedToken claim)
    {
        try
        {
            await AccountState.ReleaseAsync(db, platform.Info.Id, account.Id, claim.LeaseHolder!);
        }
        catch (NpgsqlException e)
        {
            Log.StateNotSaved(logger, e, platform.Info.Name, account);
        }
    }

    private async Task<AccountResult> StoreAsync(DueAccount account, ClaimedToken claim, string sent, TokenPair pair, DateTimeOffset deadline)
    {
        if (pair.LifetimeAssumed)
        {
            Log.LifetimeAssumed(logger, platform.Info.Name, account, platform.AssumedLifetime.TotalMinutes);
        }

        var now = time.GetUtcNow();
        var parameters = new
        {
            account.Id, pair.AccessToken, RefreshToken = pair.RefreshToken ?? sent, Sent = sent, ExpiresAt = now + pair.ExpiresIn,
            RefreshExpiresAt = now + (pair.RefreshExpiresIn ?? platform.RefreshToken.Lifetime), Now = now, Holder = claim.LeaseHolder,
        };
        return await writer.WriteAsync(sql.Store, parameters, deadline, platform.Info.Name, account) switch
        {
            WriteResult.Stored => AccountResult.Success(Outcome.Refreshed),
            WriteResult.Superseded => AccountResult.Skip("superseded: a newer token was stored meanwhile"),
            _ => AccountResult.PermanentFailure("received_but_not_stored"),
        };
    }
}
