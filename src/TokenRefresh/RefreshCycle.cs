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

    /// <summary>The most accounts claimed in one statement.</summary>
    private const int MaxClaimBatch = 32;

    /// <summary>An account's turn: its call slot, and its rate-limit permit's moment (a <see cref="TimeProvider"/> timestamp).</summary>
    private sealed record Turn(CallSlots.Slot Slot, long PermittedAt);

    // The timestamp of a permit's moment that was late ago: its grace runs from the moment, not from when it was taken.
    private long MomentAgo(TimeSpan late) => _time.GetTimestamp() - (long)(late.TotalSeconds * _time.TimestampFrequency);

    private readonly IEnumerable<IPlatformRefresher> _refreshers;
    private readonly TimeProvider _time;
    private readonly TokenRefreshOptions _options;
    private readonly TokenRefreshMetrics _metrics;
    private readonly PlatformHealthRegistry _health;
    private readonly ILogger<RefreshCycle> _logger;
    private readonly ReauthWebhook _webhook;

    // This cycle's accounts that only their users can bring back, for the webhook (one instance per cycle).
    private readonly System.Collections.Concurrent.ConcurrentQueue<ReauthEvent> _reauth = new();

    public RefreshCycle(
        IEnumerable<IPlatformRefresher> refreshers, TimeProvider time, IOptions<TokenRefreshOptions> options, TokenRefreshMetrics metrics,
        PlatformHealthRegistry health, ReauthWebhook webhook, ILogger<RefreshCycle> logger)
    {
        _webhook = webhook;
        _metrics = metrics;
        _health = health;
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
        // After the summary, within its own short budget: a receiver that is down delays the cycle's end by at most that.
        await _webhook.DeliverAsync([.. _reauth], stopping);
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

            var (notNow, late) = await refresher.WaitForPermitAsync(deadline, cancellationToken);
            if (notNow is not null)
            {
                return (refresher.Platform, account, AccountResult.Skip(notNow));
            }

            var permittedAt = MomentAgo(late);
            var claim = (await ClaimAccountsAsync(refresher, [account], deadline, cancellationToken))[0];
            var result = claim.Result ?? await ProcessAccountAsync(refresher, claim.Account! with { PermittedAt = permittedAt }, deadline, cancellationToken);
            await _webhook.DeliverAsync([.. _reauth], cancellationToken);
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
                // Each account gets a turn, in this order: a rate-limit permit, then a call slot. The accounts that have
                // turns are claimed together, in one statement, before the loop waits for another turn; a claimed account's
                // call then runs on its own. A turn that an account did not use (another process had claimed it) goes to the
                // next account while its permit is good.
                var batch = new List<(DueAccount Account, Turn Turn)>();
                var spare = new Stack<Turn>();
                var health = _health.For(refresher.Group);
                var probed = false;
                try
                {
                    await foreach (var account in refresher.FindDueAsync(stopping).WithCancellation(platformClaiming.Token))
                    {
                        if (account.Problem is not null)
                        {
                            tally.Add(await ProcessAccountAsync(refresher, account, deadline, platformClaiming.Token));
                            continue;
                        }

                        var turn = Spare() ?? TryTurnNow();
                        if (turn is null)
                        {
                            await ClaimBatchAsync();
                            turn = Spare();
                            if (turn is null)
                            {
                                var (waited, notNow) = await WaitForTurnAsync();
                                if (notNow is not null)
                                {
                                    stoppedBecause = notNow;
                                    await platformClaiming.CancelAsync();
                                    break;
                                }

                                turn = waited;
                            }
                        }

                        // While the platform is down, one account goes alone as the probe; unless it finds the platform
                        // answering again, the others are left for the next cycle, with no backoff of their own.
                        var probe = health.IsDown;
                        if (probe && probed)
                        {
                            turn!.Slot.Dispose();
                            stoppedBecause = health.Why;
                            await platformClaiming.CancelAsync();
                            break;
                        }

                        batch.Add((account, turn!));
                        if (probe)
                        {
                            probed = true;
                            await ClaimBatchAsync();
                            await Task.WhenAll(running);
                        }
                        else if (batch.Count >= MaxClaimBatch)
                        {
                            await ClaimBatchAsync();
                        }
                    }

                    if (!platformClaiming.IsCancellationRequested)
                    {
                        await ClaimBatchAsync();
                        listedAll = true;
                    }
                }
                finally
                {
                    // Turns not used free their slots.
                    foreach (var (_, turn) in batch)
                    {
                        turn.Slot.Dispose();
                    }

                    foreach (var turn in spare)
                    {
                        turn.Slot.Dispose();
                    }
                }

                async Task ClaimBatchAsync()
                {
                    if (batch.Count == 0)
                    {
                        return;
                    }

                    var claims = await ClaimAccountsAsync(refresher, batch.Select(b => b.Account).ToList(), deadline, platformClaiming.Token);
                    for (var i = 0; i < batch.Count; i++)
                    {
                        if (claims[i].Result is { } notClaimed)
                        {
                            tally.Add(notClaimed);
                            spare.Push(batch[i].Turn);
                        }
                        else
                        {
                            running.Add(RunClaimedAsync(claims[i].Account! with { PermittedAt = batch[i].Turn.PermittedAt }, batch[i].Turn.Slot));
                        }
                    }

                    batch.Clear();
                }

                // A turn left by an account that was not claimed, while its permit is good.
                Turn? Spare()
                {
                    while (spare.TryPop(out var turn))
                    {
                        if (_time.GetElapsedTime(turn.PermittedAt) <= PermitGrace)
                        {
                            return turn;
                        }

                        turn.Slot.Dispose();
                    }

                    return null;
                }

                // A turn that is there now: a free slot, and a permit with no wait.
                Turn? TryTurnNow()
                {
                    if (!lane.TryEnter(out var slot))
                    {
                        return null;
                    }

                    if (refresher.TryTakePermit() is { } late)
                    {
                        return new Turn(slot, MomentAgo(late));
                    }

                    slot.Dispose();
                    return null;
                }

                // A permit, then a slot, both still good: a permit is for its moment, and one kept while a slot came free
                // would put its call beside the next one's.
                async Task<(Turn? Turn, string? NotNow)> WaitForTurnAsync()
                {
                    CallSlots.Slot? slot = null;
                    try
                    {
                        while (true)
                        {
                            var (notNow, late) = await refresher.WaitForPermitAsync(deadline, platformClaiming.Token);
                            if (notNow is not null)
                            {
                                slot?.Dispose();
                                return (null, notNow);
                            }

                            var permittedAt = MomentAgo(late);
                            slot ??= await lane.EnterAsync(platformClaiming.Token);
                            platformClaiming.Token.ThrowIfCancellationRequested();
                            if (_time.GetElapsedTime(permittedAt) <= PermitGrace)
                            {
                                var turn = new Turn(slot, permittedAt);
                                slot = null;
                                return (turn, null);
                            }
                        }
                    }
                    finally
                    {
                        slot?.Dispose();
                    }
                }
            }
            finally
            {
                // The accounts in flight finish and are stored, whatever stopped the claiming.
                await Task.WhenAll(running);
                foreach (var (account, decided) in await refresher.FinishCycleAsync())
                {
                    using var scope = AccountScope(refresher, account);
                    tally.Add(Record(refresher, account, decided));
                }
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

                if (!result.Pending && (!result.Deferred || result.Outcome == Outcome.Failed))
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

    // Claims accounts in the claiming loop, in one statement: for each, the claimed account, or a result (skipped, or
    // failed when the claim itself failed).
    private async Task<IReadOnlyList<Claim>> ClaimAccountsAsync(
        IPlatformRefresher refresher, IReadOnlyList<DueAccount> accounts, DateTimeOffset deadline, CancellationToken claiming)
    {
        IReadOnlyList<Claim> claims;
        try
        {
            claims = await refresher.ClaimAsync(accounts, deadline, claiming);
        }
        catch (Exception e) when (e is not OperationCanceledException || !claiming.IsCancellationRequested)
        {
            return accounts.Select(a =>
            {
                using var scope = AccountScope(refresher, a);
                return new Claim(null, Record(refresher, a, Crashed(refresher, a, e)));
            }).ToList();
        }

        return accounts.Select((a, i) =>
        {
            if (claims[i].Result is not { } notClaimed)
            {
                return claims[i];
            }

            using var scope = AccountScope(refresher, a);
            return claims[i] with { Result = Record(refresher, a, notClaimed) };
        }).ToList();
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
        if (result.Pending || (result.Deferred && result.Outcome != Outcome.Failed))
        {
            return result;
        }

        switch (result.Outcome)
        {
            case Outcome.Failed:
                Log.AccountFailed(_logger, result.Quiet ? LogLevel.Debug : LogLevel.Error, refresher.Platform, account, result.Reason, result.Transient ? "transient" : "permanent");
                break;
            case Outcome.Skipped:
                Log.AccountSkipped(_logger, refresher.Platform, account, result.Reason);
                break;
            case Outcome.Deactivated:
                Log.AccountDeactivated(_logger, refresher.Platform, account, result.Reason);
                break;
            default:
                Log.AccountSucceeded(_logger, _options.LogAccountSuccess ? LogLevel.Information : LogLevel.Debug, refresher.Platform, account, result.Outcome.ToString().ToLowerInvariant());
                break;
        }

        if (result.NeedsUser || result.Outcome == Outcome.Deactivated)
        {
            _reauth.Enqueue(new ReauthEvent(result.NeedsUser ? "needs_reauth" : "deactivated", refresher.StateKey, account.Id,
                refresher.Group == "Shopify" ? account.Label : null, result.Reason, _time.GetUtcNow()));
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
