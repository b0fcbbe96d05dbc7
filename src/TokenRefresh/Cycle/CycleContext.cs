using TokenRefresh.Scheduling;

namespace TokenRefresh;

/// <summary>
/// One cycle's own state, made when it starts and gone when it ends: its deadline and budget, whether it is still
/// claiming, the calls in flight shared between the platforms, and what it has recorded.
/// </summary>
internal sealed class CycleContext : IDisposable
{
    private readonly CancellationTokenSource _budget;
    private readonly CancellationTokenSource _claiming;

    public CycleContext(TimeProvider time, TimeSpan budget, CallSlots slots, AccountRecorder recorder, CancellationToken stopping)
    {
        Time = time;
        Started = time.GetTimestamp();
        Deadline = time.GetUtcNow() + budget;
        _budget = new CancellationTokenSource(budget, time);
        _claiming = CancellationTokenSource.CreateLinkedTokenSource(stopping, _budget.Token);
        Slots = slots;
        Recorder = recorder;
        Stopping = stopping;
    }

    public TimeProvider Time { get; }

    /// <summary>When the cycle started (a <see cref="TimeProvider"/> timestamp).</summary>
    public long Started { get; }

    /// <summary>The end of the cycle's budget: no account is claimed after it, and a received pair is stored until it (at least 30 s).</summary>
    public DateTimeOffset Deadline { get; }

    /// <summary>The process is stopping (Ctrl+C, SIGTERM, the host's shutdown).</summary>
    public CancellationToken Stopping { get; }

    /// <summary>Ends when the process is stopping or the budget is spent: no new account is claimed then.</summary>
    public CancellationToken Claiming => _claiming.Token;

    /// <summary>Why claiming ended, for the platform's line: the process, the budget, or else the platform's own reason.</summary>
    public string WhyStopped(string? platformsOwn) =>
        Stopping.IsCancellationRequested ? "shutting down" : Claiming.IsCancellationRequested ? "cycle budget spent" : platformsOwn ?? "stopped for this cycle";

    /// <summary>The budget ran out before the cycle ended (whatever it left is counted as left for the next cycle).</summary>
    public bool BudgetSpent => _budget.IsCancellationRequested;

    public CallSlots Slots { get; }

    public AccountRecorder Recorder { get; }

    public TimeSpan Elapsed => Time.GetElapsedTime(Started);

    /// <summary>The timestamp of a permit's moment that was <paramref name="late"/> ago: its grace runs from the moment, not from when it was taken.</summary>
    public long MomentAgo(TimeSpan late) => Time.GetTimestamp() - (long)(late.TotalSeconds * Time.TimestampFrequency);

    public void Dispose()
    {
        _claiming.Dispose();
        _budget.Dispose();
    }
}
