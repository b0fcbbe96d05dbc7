using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;

namespace TokenRefresh;

/// <summary>
/// One platform's run in one cycle, its state in its fields. Each call needs a turn (a rate-limit permit, then a call
/// slot); with the turns there are, the platform is asked for as many of its next due accounts, claimed together in one
/// statement, and each claimed account's call then runs on its own. Claiming stops when the cycle stops claiming, or for this platform alone (refused credentials,
/// a pause past the budget, an outage): the calls in flight finish, and the rest are left for the next cycle.
/// </summary>
internal sealed partial class PlatformRun
{
    /// <summary>The most accounts claimed in one statement.</summary>
    private const int MaxClaimBatch = 32;

    private readonly IPlatform _platform;
    private readonly CycleContext _cycle;
    private readonly PlatformHealth _health;
    private readonly ILogger _logger;
    private readonly CallSlots.Lane _lane;
    private readonly CancellationTokenSource _claiming;
    private readonly Tally _tally;
    private readonly List<Task> _running = [];
    private readonly Stack<Turn> _spare = new();
    private IPlatformCycle _work = null!;
    private int _found;
    private int _handed;
    private bool _claimFailed;
    private bool _counted;
    private bool _listedAll;
    private bool _probed;
    private string? _stoppedBecause;

    /// <summary>Joins the cycle's sharing of call slots at once, so no platform takes every slot before another has even listed its accounts.</summary>
    public PlatformRun(IPlatform platform, CycleContext cycle, PlatformHealth health, ILogger logger)
    {
        _platform = platform;
        _cycle = cycle;
        _health = health;
        _logger = logger;
        _lane = cycle.Slots.Join(platform.Info.Lane);
        _claiming = CancellationTokenSource.CreateLinkedTokenSource(cycle.Claiming);
        _tally = new Tally(platform.Info);
    }

    private PlatformInfo Info => _platform.Info;

    /// <returns>The platform's summary, or null when it does not run on this database; and what failed it, if anything did.</returns>
    public async Task<(PlatformSummary? Summary, Exception? Error)> RunAsync()
    {
        using var leaving = _lane; // once this platform claims no more, its share goes to the others
        using var claiming = _claiming;
        await Task.Yield(); // platforms run side by side from here
        try
        {
            // Bounded by the budget: a database that stopped answering ends the cycle then, not after every retry's timeout.
            if (await _platform.StartCycleAsync(_claiming.Token) is not { } work)
            {
                return (null, null);
            }

            _work = work;
            _found = await work.CountDueAsync(_claiming.Token);
            _counted = true;
            foreach (var (account, reason) in work.Announced)
            {
                _cycle.Recorder.NeedsUser(Info, account, reason);
            }

            Log.Found(_logger, Info.Name, _found);
            try
            {
                await ClaimAllAsync();
            }
            finally
            {
                await FinishAsync();
            }

            return (Stopped() ? StoppedSummary() : _tally.Summary(leftOver: 0, _cycle.Elapsed), null);
        }
        catch (OperationCanceledException) when (_claiming.IsCancellationRequested && !_counted && !_cycle.Stopping.IsCancellationRequested)
        {
            // The budget ran out before the accounts were even counted: the database did not answer, and the cycle failed.
            return Failed(new TimeoutException("the database did not answer within the cycle's budget (CYCLE_BUDGET_SECONDS)"));
        }
        catch (OperationCanceledException) when (_claiming.IsCancellationRequested)
        {
            // A wait that claiming ended (a slot, a permit, a page); the accounts in flight finished above.
            return (StoppedSummary(), null);
        }
        catch (Exception e)
        {
            return Failed(e);
        }
    }

    private bool Stopped() => !_listedAll || (_claiming.IsCancellationRequested && _stoppedBecause is not null);

    private PlatformSummary StoppedSummary()
    {
        var leftOver = Math.Max(0, _found - _tally.Count);
        Log.Stopping(_logger, Info.Name, _cycle.WhyStopped(_stoppedBecause), leftOver);
        return _tally.Summary(leftOver, _cycle.Elapsed) with { Crashed = _claimFailed };
    }

    private async Task ClaimAllAsync()
    {
        try
        {
            // Accounts that fell due after the count are the next cycle's, as are those another process holds meanwhile.
            while (!_claiming.IsCancellationRequested && _handed < _found)
            {
                if (await TurnsAsync(Math.Min(_found - _handed, MaxClaimBatch)) is not { } turns)
                {
                    return; // no permit within the budget: the rest waits for the next cycle
                }

                // While the platform is down, one account goes alone as the probe; unless it finds the platform answering
                // again, the others are left for the next cycle, with no backoff of their own. (Asked once the turns are
                // there: the calls that ended meanwhile may have found it down.)
                var probe = _health.IsDown;
                if (probe)
                {
                    KeepSpare(turns[1..]);
                    turns = turns[..1];
                    if (_probed)
                    {
                        KeepSpare(turns);
                        await StopAsync(_health.Why);
                        return;
                    }
                }

                var recorded = _health.Recorded;
                IReadOnlyList<DueAccount> accounts;
                try
                {
                    accounts = await _work.NextAsync(turns.Count, _cycle.Deadline, _claiming.Token);
                }
                catch (Exception e) when (DatabaseRetry.IsTransient(e))
                {
                    // The database went away mid-cycle (a restart, a pooler's login retry): counted as this platform's
                    // failure, but not the cycle's, which `run` would wait a minute after; the next cycle comes on time.
                    KeepSpare(turns);
                    Log.ClaimFailed(_logger, e, Info.Name);
                    _claimFailed = true;
                    await StopAsync("the database could not be reached to claim accounts");
                    return;
                }

                _handed += accounts.Count;
                if (accounts.Count == 0)
                {
                    KeepSpare(turns);
                    break;
                }

                // A claim of tokens that have all expired (after an outage, the backlog) puts this platform before routine checks.
                var now = _cycle.Time.GetUtcNow();
                _lane.MarkUrgent(accounts.All(a => a.Claimed?.AccessExpiresAt <= now));
                await StartAsync(accounts, turns);
                if (probe)
                {
                    await Task.WhenAll(_running);
                    // A probe that made no call (its row has a problem) proves nothing: the next account goes instead.
                    _probed = _health.Recorded != recorded;
                }
            }

            _listedAll = !_claiming.IsCancellationRequested;
        }
        finally
        {
            // Turns not used free their slots.
            while (_spare.TryPop(out var turn))
            {
                turn.Slot.Dispose();
            }
        }
    }

    // The accounts in flight finish and are stored, whatever stopped the claiming; then what the platform decided only now.
    private async Task FinishAsync()
    {
        await Task.WhenAll(_running);
        foreach (var (account, decided) in await _work.FinishAsync())
        {
            using var scope = _cycle.Recorder.Scope(Info, account);
            _tally.Add(_cycle.Recorder.Record(Info, account, decided));
        }
    }

    private async Task StopAsync(string? reason)
    {
        Interlocked.CompareExchange(ref _stoppedBecause, reason, null);
        await _claiming.CancelAsync();
    }

    private async Task RunClaimedAsync(DueAccount account, Turn turn)
    {
        try
        {
            await Task.Yield(); // the claiming loop goes on to the next account
            if (turn.Early - _work.Permits.Clock.GetElapsedTime(turn.TakenAt) is { Ticks: > 0 } wait)
            {
                await Task.Delay(wait, _work.Permits.Clock); // its permit's moment has not come yet
            }

            var result = await ProcessAsync(account);
            if (result.Deferred)
            {
                await StopAsync(result.Reason);
            }

            if (!result.Pending && (!result.Deferred || result.Outcome == Outcome.Failed))
            {
                _tally.Add(result);
            }
        }
        finally
        {
            turn.Slot.Dispose();
        }
    }

    /// <summary>`tokenrefresh refresh`: the account this platform's option names, through the same permit, claim and call; null when it has none such.</summary>
    public async Task<(DueAccount Account, AccountResult Result)?> ForceAsync(string key)
    {
        using var leaving = _lane;
        using var claiming = _claiming;
        if (await _platform.StartCycleAsync(_cycle.Stopping) is not { } work || await work.FindAccountAsync(key, _cycle.Stopping) is not { } account)
        {
            return null;
        }

        _work = work;
        var (notNow, late) = await work.Permits.WaitAsync(_cycle.Deadline, _cycle.Stopping);
        if (notNow is not null)
        {
            return (account, AccountResult.Skip(notNow));
        }

        var permittedAt = _cycle.MomentAgo(late);
        var claim = (await ClaimAsync([account], _cycle.Stopping))[0];
        return (account, claim.Result ?? await ProcessAsync(claim.Account! with { PermittedAt = permittedAt }, _cycle.Stopping));
    }

    // Claims accounts in one statement: for each, the claimed account, or a result (skipped, or failed when the claim itself failed).
    private async Task<IReadOnlyList<Claim>> ClaimAsync(IReadOnlyList<DueAccount> accounts, CancellationToken claiming)
    {
        IReadOnlyList<Claim> claims;
        try
        {
            claims = await _work.ClaimAsync(accounts, _cycle.Deadline, claiming);
        }
        catch (Exception e) when (e is not OperationCanceledException || !claiming.IsCancellationRequested)
        {
            return [.. accounts.Select(a => new Claim(null, Record(a, _cycle.Recorder.Crashed(Info, a, e))))];
        }

        return [.. accounts.Select((a, i) => claims[i].Result is { } notClaimed ? claims[i] with { Result = Record(a, notClaimed) } : claims[i])];
    }

    private async Task<AccountResult> ProcessAsync(DueAccount account, CancellationToken? claiming = null)
    {
        using var scope = _cycle.Recorder.Scope(Info, account);
        if (account.Problem is not null)
        {
            return _cycle.Recorder.Record(Info, account, AccountResult.Skip(account.Problem));
        }

        AccountResult result;
        try
        {
            // Shutdown only ends waits before the call: an account that was claimed finishes, so no rotated token is dropped mid-write.
            result = await _work.ProcessAsync(account, _cycle.Deadline, claiming ?? _claiming.Token);
        }
        catch (Exception e)
        {
            result = _cycle.Recorder.Crashed(Info, account, e);
        }

        return _cycle.Recorder.Record(Info, account, result);
    }

    private AccountResult Record(DueAccount account, AccountResult result)
    {
        using var scope = _cycle.Recorder.Scope(Info, account);
        return _cycle.Recorder.Record(Info, account, result);
    }

    // What stopped the platform as a whole: one line saying what to fix, the summary marked, and the error for the cycle.
    private (PlatformSummary? Summary, Exception? Error) Failed(Exception e)
    {
        var crashed = _tally.Summary(0, _cycle.Elapsed) with { Crashed = true };
        switch (e)
        {
            case SchemaException when Info.Optional:
                // An optional platform whose table is missing or lacks a column stops only itself.
                Log.OptionalNotRun(_logger, Info.Name, e.Message);
                return (_tally.Summary(0, _cycle.Elapsed) with { NotRun = e.Message }, null);
            case SchemaException:
                // The main application's table lacks what this platform needs: one line that names it, no stack trace.
                Log.SchemaProblem(_logger, Info.Name, e.Message);
                break;
            case PostgresException { SqlState: PostgresErrorCodes.UndefinedTable }:
                Log.TableMissing(_logger, e, Info.Name);
                break;
            case { InnerException: System.Security.Authentication.AuthenticationException tls }:
                // sslmode=verify-ca or verify-full, and the server's certificate does not pass: say so in words.
                Log.DatabaseCertificateRefused(_logger, e, Info.Name, tls.Message);
                break;
            default:
                Log.PlatformFailed(_logger, e, Info.Name);
                break;
        }

        return (crashed, e);
    }
}
