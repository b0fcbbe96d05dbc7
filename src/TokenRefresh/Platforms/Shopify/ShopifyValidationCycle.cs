using System.Runtime.CompilerServices;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;
using TokenRefresh.Settings;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// One cycle's validation of the active stores' non-expiring offline tokens: a store is deactivated only on a
/// definitive 401, confirmed by a second call, and only when the incident guard sees no wave of them.
/// </summary>
internal sealed partial class ShopifyValidationCycle(
    PlatformInfo info,
    TableShape shape,
    ShopifyValidationStatements sql,
    ShopifyClient client,
    ShopifySettings settings,
    CycleSettings cycle,
    NpgsqlDataSource db,
    TimeProvider time,
    TokenRefreshMetrics metrics,
    PlatformHealth health,
    IncidentGuard guard,
    NonExpiringCutoff cutoff,
    ILogger logger) : IPlatformCycle
{
    /// <summary>What a store whose 401 came while deactivation was paused is reported as.</summary>
    public const string DeactivationPaused = "deactivation_paused";

    private readonly ValidatedStores _validated = new(db, sql.SaveValidated, (long)settings.ValidateInterval.TotalSeconds, logger);
    private readonly RefusedStores _refused = new();
    private readonly ControlStores _controls = new(db, sql.Controls, client, logger);
    private Batches<DueAccount>? _due;

    private long IntervalSeconds => (long)settings.ValidateInterval.TotalSeconds;

    private long LeaseSeconds => (long)Math.Ceiling(cycle.LeaseLength.TotalSeconds);

    // At most this many stores are given their next check by key; more (a first start) in one statement.
    private const int ScheduledByKey = 50_000;

    // Shopify's limits are per store: no permit.
    public IPermits Permits => NoRateLimit.Instance;

    public async Task<int> CountDueAsync(CancellationToken cancellationToken)
    {
        var due = await DatabaseRetry.ReadAsync(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            await ShopDomain.WarnAboutUncallableAsync(connection, shape, info.Name, time.GetUtcNow(), logger, ct);
            await cutoff.WarnAsync(connection, shape, ct);
            await sql.Leftovers.RemoveAsync(connection, time.GetUtcNow(), info.Name, logger, ct);
            await ScheduleAsync(connection, ct);
            return await connection.ExecuteScalarAsync<int>(new CommandDefinition(sql.CountDue, new { Now = time.GetUtcNow() }, cancellationToken: ct));
        }, cancellationToken);
        return due;
    }

    // The stores without a next check are given one: by key when they are a few (a pass that PostgreSQL's workers
    // share), in one statement at a first start (a million in about 25 s: it may take the cycle's budget, not the
    // usual command timeout). The statistics that changed much are renewed (a warning only, where the role does not own
    // the table), so that the statements after it are planned for the rows now there.
    private async Task ScheduleAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var parameters = new { Now = time.GetUtcNow(), IntervalSeconds, LeaseSeconds, Most = ScheduledByKey + 1 };
        var found = await connection.ReadRowsAsync<(string Id, DateTimeOffset At, DateTimeOffset? Was)>(
            new CommandDefinition(sql.ScheduleFind, parameters, cancellationToken: cancellationToken));
        if (found.Count is > 0 and <= ScheduledByKey)
        {
            await connection.ExecuteAsync(new CommandDefinition(sql.ScheduleSet, new
            {
                parameters.Now, Ids = found.Select(f => f.Id).ToArray(), Ats = found.Select(f => f.At).ToArray(), Wases = found.Select(f => f.Was).ToArray(),
            }, cancellationToken: cancellationToken));
        }
        else if (found.Count > ScheduledByKey)
        {
            await connection.ExecuteAsync(new CommandDefinition(sql.Schedule, parameters, commandTimeout: (int)cycle.CycleBudget.TotalSeconds, cancellationToken: cancellationToken));
        }

        if (found.Count > 10_000)
        {
            await connection.ExecuteAsync(new CommandDefinition("ANALYZE token_refresh_state", cancellationToken: cancellationToken));
        }
    }

    public Task<IReadOnlyList<DueAccount>> NextAsync(int count, DateTimeOffset deadline, CancellationToken claiming)
    {
        _due ??= new Batches<DueAccount>(FindDueAsync(claiming), claiming);
        return _due.NextAsync(count);
    }

    private async IAsyncEnumerable<DueAccount> FindDueAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await foreach (var row in Paging.ReadAsync<ClaimedToken>(PageAsync).WithCancellation(cancellationToken))
        {
            // A store the page found not to be validated (switched off, deleted, uncallable) was set aside by it.
            if (!row.Claimed)
            {
                continue;
            }

            yield return new DueAccount(row.Id, row.ShopDomain ?? "", row.Token.Length == 0 ? "access_token is NULL or empty" : ShopDomain.Problem(row.ShopDomain))
            {
                Claimed = row,
            };
        }

        // Each page takes the next due stores: those it took are no longer due, so it needs no cursor.
        Task<IReadOnlyList<ClaimedToken>> PageAsync(ClaimedToken? after) => DatabaseRetry.ReadAsync<IReadOnlyList<ClaimedToken>>(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            return await connection.ReadRowsAsync<ClaimedToken>(new CommandDefinition(
                sql.ClaimPage, new { Now = now, IntervalSeconds, LeaseSeconds }, cancellationToken: ct));
        }, cancellationToken).AsTask();
    }

    public async Task<DueAccount?> FindAccountAsync(string key, CancellationToken cancellationToken)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var rows = await connection.ReadRowsAsync<(string Id, string ShopDomain)>(new CommandDefinition(sql.FindAccount, new { Key = key }, cancellationToken: cancellationToken));
        return rows switch
        {
            [] => null,
            [var r] => new DueAccount(r.Id, r.ShopDomain, ShopDomain.Problem(r.ShopDomain)) { Forced = true },
            // The main application's table does not make shop_domain unique: name no row rather than a random one.
            [var r, ..] => new DueAccount(r.Id, r.ShopDomain, $"{rows.Count} active stores have shop_domain {key}") { Forced = true },
        };
    }

    // The page took the stores (their next check moved a lease ahead); a validation sends the token it read with the
    // page and writes only its state and is_active, guarded by that token.
    public Task<IReadOnlyList<Claim>> ClaimAsync(IReadOnlyList<DueAccount> accounts, DateTimeOffset deadline, CancellationToken claiming) =>
        Task.FromResult<IReadOnlyList<Claim>>([.. accounts.Select(a => new Claim(a))]);

    public async Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken claiming)
    {
        var row = account.Claimed ?? await ReadAsync(account);
        if (row is null || string.IsNullOrEmpty(row.Token))
        {
            return AccountResult.Skip("no longer active, or its token was removed");
        }

        // Not cancelled by shutdown: a validation that started finishes and its result is recorded.
        var result = await client.ValidateAsync(account.Label!, row.Token, CancellationToken.None);
        if (result.Status == CallStatus.Rejected && (!guard.Tripped || account.Forced))
        {
            // One 401 switches no store off: it is deactivated only when a second call is rejected too.
            result = await client.ValidateAsync(account.Label!, row.Token, CancellationToken.None);
        }

        if (result.Error is { } error)
        {
            Log.UnexpectedAfterSend(logger, error, account.Label);
        }

        var platformDown = health.Record(result.Reason);
        var now = time.GetUtcNow();
        if (result.Status == CallStatus.Ok && !account.Forced)
        {
            // Successes are recorded a batch at a time (and the rest when the cycle ends): one statement for many stores.
            await _validated.AddAsync(account.Id, now);
            guard.Accepted();
            return AccountResult.Success(Outcome.Validated);
        }

        var hash = AccountState.Hash(row.Token);
        if (result.Status == CallStatus.Rejected && !account.Forced)
        {
            return await RejectedAsync(account, row, hash, result.Reason!);
        }

        // A connection only for the result: none is held while Shopify answers.
        await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
        switch (result.Status)
        {
            case CallStatus.Ok:
                await SaveAsync(connection, account, AccountState.Succeeded(now));
                return AccountResult.Success(Outcome.Validated);
            case CallStatus.Rejected:
                return await DeactivateAsync(connection, account, row.Token, hash, result.Reason!);
            case CallStatus.Permanent when result.Reason == ShopifyClient.NonExpiringRefused:
                // Not deactivated: the store is fine, its token is of the kind Shopify stops accepting. Flagged for the
                // main application, backed off, and said once for the cycle with the command that moves it.
                var (flagged, refused) = row.State.FlaggedAndRetried(result.Reason, hash, now);
                var saved = await SaveAsync(connection, account, flagged);
                _refused.Add(account.Label);
                // Not flagged in the database (the store was deleted meanwhile, or the write failed): not announced either.
                return refused with { Quiet = true, NeedsUser = refused.NeedsUser && saved };
            default:
                // 429 and THROTTLED pause only this store: Shopify's limits are per app and store.
                var (state, failure) = row.State.Failed(
                    result.Status, result.Reason!, result.OutcomeUnknown, result.RetryAfter, hash, now, cycle.UnknownOutcomeWait, platformDown);
                await SaveAsync(connection, account, state);
                return failure;
        }
    }

    /// <summary>Stores the validations waiting, then decides on the cycle's rejections (<see cref="DecideRejectedAsync"/>).</summary>
    public async Task<IReadOnlyList<(DueAccount Account, AccountResult Result)>> FinishAsync()
    {
        if (_due is not null)
        {
            await _due.DisposeAsync();
        }

        await _validated.SaveAsync(force: true);
        _refused.Say(logger);
        return await DecideRejectedAsync();
    }

    // For an account named by an operator (`tokenrefresh refresh --shop`), not read with a page.
    private async Task<ClaimedToken?> ReadAsync(DueAccount account)
    {
        await using var connection = await db.OpenConnectionAsync();
        return await connection.ReadRowOrDefaultAsync<ClaimedToken>(new CommandDefinition(sql.ReadOne, new { account.Id }));
    }

    // Whether the state was written: not when the store was deleted meanwhile, or the database failed (said).
    private async Task<bool> SaveAsync(NpgsqlConnection connection, DueAccount account, AccountState state)
    {
        try
        {
            return await state.SaveAsync(connection, sql.SaveState, info.Id, account.Id, time.GetUtcNow(), CancellationToken.None) > 0;
        }
        catch (NpgsqlException e)
        {
            Log.StateNotSaved(logger, e, account.Label);
            return false;
        }
    }

    private async Task<AccountResult> DeactivateAsync(NpgsqlConnection connection, DueAccount account, string rejectedToken, string hash, string reason)
    {
        var (deactivated, exchangePending) = await connection.ReadRowAsync<(long, bool)>(new CommandDefinition(
            sql.Deactivate, new { account.Id, RejectedToken = rejectedToken, Hash = hash, Now = time.GetUtcNow(), Shop = account.Label, Reason = reason }));
        return deactivated == 1 ? new AccountResult(Outcome.Deactivated, reason)
            : exchangePending ? AccountResult.PermanentFailure("token_exchange_unanswered: run `tokenrefresh shopify migrate-expiring` again")
            : AccountResult.Skip("its token changed while it was being validated");
    }
}
