using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh;

/// <summary>The cycle failed as a whole (database unreachable, unexpected error); the caller retries later.</summary>
public sealed class CycleFailedException(CycleSummary summary, Exception inner) : Exception($"The refresh cycle failed: {summary}", inner)
{
    /// <summary>What the cycle did before it failed (already logged).</summary>
    public CycleSummary Summary { get; } = summary;
}

/// <summary>
/// One refresh cycle: runs every platform, isolates failures per account, and logs one summary event.
/// </summary>
public sealed partial class RefreshCycle
{
    /// <summary>How late after its moment a rate-limit permit may still be used.</summary>
    internal static readonly TimeSpan PermitGrace = TimeSpan.FromMilliseconds(25);

    private readonly IEnumerable<IPlatformRefresher> _refreshers;
    private readonly TimeProvider _time;
    private readonly TokenRefreshOptions _options;
    private readonly TokenRefreshMetrics _metrics;
    private readonly ILogger<RefreshCycle> _logger;

    public RefreshCycle(
        IEnumerable<IPlatformRefresher> refreshers, TimeProvider time, IOptions<TokenRefreshOptions> options, TokenRefreshMetrics metrics, ILogger<RefreshCycle> logger)
    {
        _metrics = metrics;
        _refreshers = refreshers;
        _time = time;
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>
    /// Runs one cycle, the platforms side by side. When the budget is spent or <paramref name="stopping"/> fires,
    /// no new account is claimed; in-flight ones finish, and the rest are counted as left for the next cycle.
    /// </summary>
    /// <exception cref="CycleFailedException">A platform could not run; the summary was logged first.</exception>
    public async Task<CycleSummary> RunAsync(CancellationToken stopping = default)
    {
        var started = _time.GetTimestamp();
        var deadline = _time.GetUtcNow() + _options.CycleBudget;
        using var budget = new CancellationTokenSource(_options.CycleBudget, _time);
        using var claiming = CancellationTokenSource.CreateLinkedTokenSource(stopping, budget.Token);
        // REFRESH_MAX_CONCURRENCY bounds the calls in flight across all platforms together, shared fairly between them.
        var slots = new CallSlots(_options.MaxConcurrency, _options.GroupConcurrency);
        Log.CycleStarted(_logger);

        // Every platform has its lane from the start, so none takes every slot before another has even listed its accounts.
        var outcomes = (await Task.WhenAll(_refreshers.Select(r => (Refresher: r, Lane: slots.Join(r.Group))).ToList()
                .Select(p => RunPlatformAsync(p.Refresher, deadline, p.Lane, started, claiming.Token, stopping))))
            .Where(o => o.Summary is not null)
            .ToList();

        var result = new CycleSummary(outcomes.Select(o => o.Summary!).ToList(), _time.GetElapsedTime(started));
        LogSummary(result);
        _metrics.CycleCompleted(result);
        var failure = outcomes.Select(o => o.Error).FirstOrDefault(e => e is not null);
        return failure is null ? result : throw new CycleFailedException(result, failure);
    }

    /// <summary>
    /// Refreshes (through the same claim) or validates one named account now (`tokenrefresh refresh`), with the
    /// same guarantees as a cycle, whether it is due or backing off, but never while an earlier request with its
    /// token may still be in flight. Null when no platform has such an account.
    /// </summary>
    public async Task<(string Platform, DueAccount Account, AccountResult Result)?> ForceAsync(string kind, string key, CancellationToken cancellationToken = default)
    {
        var deadline = _time.GetUtcNow() + _options.CycleBudget;
        foreach (var refresher in _refreshers)
        {
            if (await refresher.FindAccountAsync(kind, key, cancellationToken) is not { } account)
            {
                continue;
            }

            if (await refresher.WaitForPermitAsync(deadline, cancellationToken) is { } notNow)
            {
                return (refresher.Platform, account, AccountResult.Skip(notNow));
            }

            var claim = await ClaimAccountAsync(refresher, account, deadline, cancellationToken);
            var result = claim.Result ?? await ProcessAccountAsync(refresher, claim.Account!, deadline, cancellationToken);
            return (refresher.Platform, account, result);
        }

        return null;
    }

    /// <returns>The platform's summary, or null when it is not enabled on this database.</returns>
    private async Task<(PlatformSummary? Summary, Exception? Error)> RunPlatformAsync(
        IPlatformRefresher refresher, DateTimeOffset deadline, CallSlots.Lane lane, long started, CancellationToken claiming, CancellationToken stopping)
    {
        using var leaving = lane; // once this platform claims no more, its share goes to the others
        await Task.Yield(); // platforms run side by side from here
        var tally = new Tally(refresher);
        var found = 0;
        string? stoppedBecause = null;
        // Stops claiming for this platform alone when an account stops it (refused credentials) or its permits run past the budget.
        using var platformClaiming = CancellationTokenSource.CreateLinkedTokenSource(claiming);
        var running = new List<Task>();
        try
        {
            if (!await refresher.IsEnabledAsync(stopping))
            {
                return (null, null);
            }

            found = await refresher.CountDueAsync(stopping);
            Log.Found(_logger, refresher.Platform, found);
            var listedAll = false;
            try
            {
                // In this order, one account at a time: a rate-limit permit, a slot, the claim; then the call runs on
                // its own while the next account goes through. A permit or slot that an account did not use (another
                // process claimed it first) goes to the next account.
                var permitted = false;
                var permittedAt = 0L;
                CallSlots.Slot? slot = null;
                try
                {
                    await foreach (var account in refresher.FindDueAsync(stopping).WithCancellation(platformClaiming.Token))
                    {
                        if (account.Problem is not null)
                        {
                            tally.Add(await ProcessAccountAsync(refresher, account, deadline, platformClaiming.Token));
                            continue;
                        }

                        if (await NextTurnAsync() is { } notNow)
                        {
                            stoppedBecause = notNow;
                            await platformClaiming.CancelAsync();
                            break;
                        }

                        var claim = await ClaimAccountAsync(refresher, account, deadline, platformClaiming.Token);
                        if (claim.Result is { } notClaimed)
                        {
                            tally.Add(notClaimed);
                            continue;
                        }

                        permitted = false;
                        running.Add(RunClaimedAsync(claim.Account! with { PermittedAt = permittedAt }, slot!));
                        slot = null;
                    }

                    listedAll = !platformClaiming.IsCancellationRequested;
                }
                finally
                {
                    slot?.Dispose();
                }

                // A permit, then a slot, both still good: a permit is for its moment, and one kept while a slot came
                // free or while other processes' accounts were passed over would put its call beside the next one's.
                async Task<string?> NextTurnAsync()
                {
                    while (true)
                    {
                        if (!permitted)
                        {
                            if (await refresher.WaitForPermitAsync(deadline, platformClaiming.Token) is { } notNow)
                            {
                                return notNow;
                            }

                            permitted = true;
                            permittedAt = _time.GetTimestamp();
                        }

                        slot ??= await lane.EnterAsync(platformClaiming.Token);
                        platformClaiming.Token.ThrowIfCancellationRequested();
                        permitted = _time.GetElapsedTime(permittedAt) <= PermitGrace;
                        if (permitted)
                        {
                            return null;
                        }
                    }
                }
            }
            finally
            {
                // The accounts in flight finish and are stored, whatever stopped the claiming.
                await Task.WhenAll(running);
                await refresher.FinishCycleAsync();
            }

            if (!listedAll || (platformClaiming.IsCancellationRequested && stoppedBecause is not null))
            {
                throw new OperationCanceledException(platformClaiming.Token);
            }

            return (tally.Summary(leftOver: 0, _time.GetElapsedTime(started)), null);
        }
        catch (OperationCanceledException) when (platformClaiming.IsCancellationRequested)
        {
            // Claiming stopped (shutting down, budget spent, or a pause past it); the accounts in flight finished above.
            var leftOver = Math.Max(0, found - tally.Count);
            var why = stopping.IsCancellationRequested ? "shutting down"
                : claiming.IsCancellationRequested ? "cycle budget spent"
                : stoppedBecause ?? "stopped for this cycle";
            Log.Stopping(_logger, refresher.Platform, why, leftOver);
            return (tally.Summary(leftOver, _time.GetElapsedTime(started)), null);
        }
        catch (SchemaException e)
        {
            // The main application's table lacks what this platform needs: one line that names it, no stack trace.
            Log.SchemaProblem(_logger, refresher.Platform, e.Message);
            return (tally.Summary(0, _time.GetElapsedTime(started)) with { Crashed = true }, e);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            Log.TableMissing(_logger, e, refresher.Platform);
            return (tally.Summary(0, _time.GetElapsedTime(started)) with { Crashed = true }, e);
        }
        catch (Exception e) when (e.InnerException is System.Security.Authentication.AuthenticationException tls)
        {
            // sslmode=verify-ca or verify-full, and the server's certificate does not pass: say so in words.
            Log.DatabaseCertificateRefused(_logger, e, refresher.Platform, tls.Message);
            return (tally.Summary(0, _time.GetElapsedTime(started)) with { Crashed = true }, e);
        }
        catch (Exception e)
        {
            Log.PlatformFailed(_logger, e, refresher.Platform);
            return (tally.Summary(0, _time.GetElapsedTime(started)) with { Crashed = true }, e);
        }

        async Task RunClaimedAsync(DueAccount account, CallSlots.Slot slot)
        {
            try
            {
                await Task.Yield(); // the claiming loop goes on to the next account
                var result = await ProcessAccountAsync(refresher, account, deadline, platformClaiming.Token);
                if (result.Deferred)
                {
                    Interlocked.CompareExchange(ref stoppedBecause, result.Reason, null);
                    await platformClaiming.CancelAsync();
                }

                if (!result.Deferred || result.Outcome == Outcome.Failed)
                {
                    tally.Add(result);
                }
            }
            finally
            {
                slot.Dispose();
            }
        }
    }

    /// <summary>Outcomes counted from accounts processed in parallel.</summary>
    private sealed class Tally(IPlatformRefresher refresher)
    {
        private readonly Lock _lock = new();
        private PlatformSummary _summary = new(refresher.Platform, refresher.SuccessOutcome);

        public int Count
        {
            get
            {
                lock (_lock)
                {
                    return _summary.Found;
                }
            }
        }

        public void Add(AccountResult result)
        {
            lock (_lock)
            {
                _summary = _summary.Add(result);
            }
        }

        public PlatformSummary Summary(int leftOver, TimeSpan duration)
        {
            lock (_lock)
            {
                return _summary with { LeftOver = leftOver, Duration = duration };
            }
        }
    }

    // Claims in the claiming loop; a result when the account is not processed now (skipped), else the claimed account.
    private async Task<Claim> ClaimAccountAsync(IPlatformRefresher refresher, DueAccount account, DateTimeOffset deadline, CancellationToken claiming)
    {
        using var scope = AccountScope(refresher, account);
        Claim claim;
        try
        {
            claim = await refresher.ClaimAsync(account, deadline, claiming);
        }
        catch (Exception e) when (e is not OperationCanceledException || !claiming.IsCancellationRequested)
        {
            return new Claim(null, Record(refresher, account, Crashed(refresher, account, e)));
        }

        return claim.Result is { } notClaimed ? claim with { Result = Record(refresher, account, notClaimed) } : claim;
    }

    private async Task<AccountResult> ProcessAccountAsync(IPlatformRefresher refresher, DueAccount account, DateTimeOffset deadline, CancellationToken claiming)
    {
        using var scope = AccountScope(refresher, account);
        if (account.Problem is not null)
        {
            return Record(refresher, account, AccountResult.Skip(account.Problem));
        }

        AccountResult result;
        try
        {
            // Shutdown only ends waits before the call: an account that was claimed finishes, so no rotated token is dropped mid-write.
            result = await refresher.ProcessAsync(account, deadline, claiming);
        }
        catch (Exception e)
        {
            result = Crashed(refresher, account, e);
        }

        return Record(refresher, account, result);
    }

    private AccountResult Crashed(IPlatformRefresher refresher, DueAccount account, Exception e)
    {
        if (e is NpgsqlException)
        {
            // Nothing of this account's was half-written; the next account gets a fresh connection.
            Log.AccountDatabaseError(_logger, e, refresher.Platform, account);
            return AccountResult.TransientFailure("database_error");
        }

        Log.AccountCrashed(_logger, e, refresher.Platform, account);
        return AccountResult.PermanentFailure("unexpected_error");
    }

    // Logs an account's outcome (in its scope) and counts it in the metrics.
    private AccountResult Record(IPlatformRefresher refresher, DueAccount account, AccountResult result)
    {
        if (result.Deferred && result.Outcome != Outcome.Failed)
        {
            return result;
        }

        switch (result.Outcome)
        {
            case Outcome.Failed:
                Log.AccountFailed(_logger, refresher.Platform, account, result.Reason, result.Transient ? "transient" : "permanent");
                break;
            case Outcome.Skipped:
                Log.AccountSkipped(_logger, refresher.Platform, account, result.Reason);
                break;
            case Outcome.Deactivated:
                Log.AccountDeactivated(_logger, refresher.Platform, account, result.Reason);
                break;
            default:
                Log.AccountSucceeded(_logger, refresher.Platform, account, result.Outcome.ToString().ToLowerInvariant());
                break;
        }

        _metrics.AccountProcessed(refresher.Platform, result);
        return result;
    }

    private IDisposable? AccountScope(IPlatformRefresher refresher, DueAccount account) => _logger.BeginScope(new Dictionary<string, object>
    {
        ["Platform"] = refresher.Platform,
        ["AccountId"] = account.Id,
    });

    private void LogSummary(CycleSummary summary)
    {
        // The counts as named properties (e.g. EtsyRefreshed, ShopifyDeactivated) on the one summary event.
        using var scope = _logger.BeginScope(summary.Properties());
        var level = summary.Crashed ? LogLevel.Error : summary.AnyFailed ? LogLevel.Warning : LogLevel.Information;
        Log.CycleCompleted(_logger, level, Math.Round(summary.Duration.TotalMilliseconds), summary.ToString());
    }
}
