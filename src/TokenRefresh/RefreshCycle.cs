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
    private readonly IEnumerable<IPlatformRefresher> _refreshers;
    private readonly TimeProvider _time;
    private readonly TimeSpan _budget;
    private readonly int _concurrency;
    private readonly TokenRefreshMetrics _metrics;
    private readonly ILogger<RefreshCycle> _logger;

    public RefreshCycle(
        IEnumerable<IPlatformRefresher> refreshers, TimeProvider time, IOptions<TokenRefreshOptions> options, TokenRefreshMetrics metrics, ILogger<RefreshCycle> logger)
    {
        _metrics = metrics;
        _refreshers = refreshers;
        _time = time;
        _budget = options.Value.CycleBudget;
        _concurrency = options.Value.MaxConcurrency;
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
        var deadline = _time.GetUtcNow() + _budget;
        using var budget = new CancellationTokenSource(_budget, _time);
        using var claiming = CancellationTokenSource.CreateLinkedTokenSource(stopping, budget.Token);
        // REFRESH_MAX_CONCURRENCY bounds the accounts in flight across all platforms together.
        using var slots = new SemaphoreSlim(_concurrency, _concurrency);
        Log.CycleStarted(_logger);

        var outcomes = (await Task.WhenAll(_refreshers.Select(r => RunPlatformAsync(r, deadline, slots, claiming.Token, stopping))))
            .Where(o => o.Summary is not null)
            .ToList();

        var result = new CycleSummary(outcomes.Select(o => o.Summary!).ToList(), _time.GetElapsedTime(started));
        LogSummary(result);
        _metrics.CycleCompleted(result);
        var failure = outcomes.Select(o => o.Error).FirstOrDefault(e => e is not null);
        return failure is null ? result : throw new CycleFailedException(result, failure);
    }

    /// <summary>
    /// Refreshes (through the same row lock) or validates one named account now (`tokenrefresh refresh`), with the
    /// same guarantees as a cycle, whether it is due or backing off, but never while an earlier request with its
    /// token may still be in flight. Null when no platform has such an account.
    /// </summary>
    public async Task<(string Platform, DueAccount Account, AccountResult Result)?> ForceAsync(string kind, string key, CancellationToken cancellationToken = default)
    {
        foreach (var refresher in _refreshers)
        {
            if (await refresher.FindAccountAsync(kind, key, cancellationToken) is { } account)
            {
                return (refresher.Platform, account, await ProcessAccountAsync(refresher, account, _time.GetUtcNow() + _budget, cancellationToken));
            }
        }

        return null;
    }

    /// <returns>The platform's summary, or null when it is not enabled on this database.</returns>
    private async Task<(PlatformSummary? Summary, Exception? Error)> RunPlatformAsync(
        IPlatformRefresher refresher, DateTimeOffset deadline, SemaphoreSlim slots, CancellationToken claiming, CancellationToken stopping)
    {
        await Task.Yield(); // platforms run side by side from here
        var tally = new Tally(refresher);
        var found = 0;
        string? stoppedBecause = null;
        // Stops claiming for this platform alone when an account defers the rest (a 429 pause past the budget).
        using var platformClaiming = CancellationTokenSource.CreateLinkedTokenSource(claiming);
        try
        {
            if (!await refresher.IsEnabledAsync(stopping))
            {
                return (null, null);
            }

            found = await refresher.CountDueAsync(stopping);
            Log.Found(_logger, refresher.Platform, found);
            var parallel = new ParallelOptions { MaxDegreeOfParallelism = _concurrency, CancellationToken = platformClaiming.Token };
            await Parallel.ForEachAsync(refresher.FindDueAsync(stopping), parallel, async (account, token) =>
            {
                await slots.WaitAsync(token);
                try
                {
                    // Our own source, set at once by an account that stopped the platform (the loop's token follows it a moment later).
                    if (platformClaiming.IsCancellationRequested)
                    {
                        return;
                    }

                    var result = await ProcessAccountAsync(refresher, account, deadline, token);
                    if (result.Deferred)
                    {
                        if (result.Outcome == Outcome.Failed)
                        {
                            tally.Add(result);
                        }

                        Interlocked.CompareExchange(ref stoppedBecause, result.Reason, null);
                        await platformClaiming.CancelAsync();
                        return;
                    }

                    tally.Add(result);
                }
                finally
                {
                    slots.Release();
                }
            });

            return (tally.Summary(leftOver: 0), null);
        }
        catch (OperationCanceledException) when (platformClaiming.IsCancellationRequested)
        {
            // Claiming stopped (shutting down, budget spent, or a pause past it); the accounts in flight finished above.
            var leftOver = Math.Max(0, found - tally.Count);
            var why = stopping.IsCancellationRequested ? "shutting down"
                : claiming.IsCancellationRequested ? "cycle budget spent"
                : stoppedBecause ?? "stopped for this cycle";
            Log.Stopping(_logger, refresher.Platform, why, leftOver);
            return (tally.Summary(leftOver), null);
        }
        catch (SchemaException e)
        {
            // The main application's table lacks what this platform needs: one line that names it, no stack trace.
            Log.SchemaProblem(_logger, refresher.Platform, e.Message);
            return (tally.Summary(0) with { Crashed = true }, e);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            Log.TableMissing(_logger, e, refresher.Platform);
            return (tally.Summary(0) with { Crashed = true }, e);
        }
        catch (Exception e) when (e.InnerException is System.Security.Authentication.AuthenticationException tls)
        {
            // sslmode=verify-ca or verify-full, and the server's certificate does not pass: say so in words.
            Log.DatabaseCertificateRefused(_logger, e, refresher.Platform, tls.Message);
            return (tally.Summary(0) with { Crashed = true }, e);
        }
        catch (Exception e)
        {
            Log.PlatformFailed(_logger, e, refresher.Platform);
            return (tally.Summary(0) with { Crashed = true }, e);
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

        public PlatformSummary Summary(int leftOver)
        {
            lock (_lock)
            {
                return _summary with { LeftOver = leftOver };
            }
        }
    }

    private async Task<AccountResult> ProcessAccountAsync(IPlatformRefresher refresher, DueAccount account, DateTimeOffset deadline, CancellationToken claiming)
    {
        var result = await ProcessAndLogAsync(refresher, account, deadline, claiming);
        if (!result.Deferred)
        {
            _metrics.AccountProcessed(refresher.Platform, result);
        }

        return result;
    }

    private async Task<AccountResult> ProcessAndLogAsync(IPlatformRefresher refresher, DueAccount account, DateTimeOffset deadline, CancellationToken claiming)
    {
        using var scope = _logger.BeginScope(new Dictionary<string, object>
        {
            ["Platform"] = refresher.Platform,
            ["AccountId"] = account.Id,
        });

        if (account.Problem is not null)
        {
            Log.AccountSkipped(_logger, refresher.Platform, account, account.Problem);
            return AccountResult.Skip(account.Problem);
        }

        AccountResult result;
        try
        {
            // Shutdown only ends waits before the claim: an account that was claimed finishes, so no rotated token is dropped mid-write.
            result = await refresher.ProcessAsync(account, deadline, claiming);
        }
        catch (NpgsqlException e)
        {
            // This account's transaction rolled back; the next account gets a fresh connection.
            Log.AccountDatabaseError(_logger, e, refresher.Platform, account);
            return AccountResult.TransientFailure("database_error");
        }
        catch (Exception e)
        {
            Log.AccountCrashed(_logger, e, refresher.Platform, account);
            return AccountResult.PermanentFailure("unexpected_error");
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

        return result;
    }

    private void LogSummary(CycleSummary summary)
    {
        // The counts as named properties (e.g. EtsyRefreshed, ShopifyDeactivated) on the one summary event.
        using var scope = _logger.BeginScope(summary.Properties());
        var level = summary.Crashed ? LogLevel.Error : summary.AnyFailed ? LogLevel.Warning : LogLevel.Information;
        Log.CycleCompleted(_logger, level, Math.Round(summary.Duration.TotalMilliseconds), summary.ToString());
    }
}
