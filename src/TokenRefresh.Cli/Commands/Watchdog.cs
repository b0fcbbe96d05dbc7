namespace TokenRefresh.Cli.Commands;

/// <summary>
/// `run`'s own watch on its heartbeat: once the time by which a cycle should have ended passes with none that ran (a
/// hang, a database that stays unreachable), <see cref="StaleAsync"/> ends, and `run` exits non-zero, so that Docker's
/// restart policy, Railway's ON_FAILURE and Kubernetes start it again. Only exiting makes them act.
/// </summary>
internal sealed class Watchdog(TimeProvider time, DateTimeOffset firstDeadline)
{
    private long _deadlineTicks = firstDeadline.UtcTicks;

    /// <summary>The time by which the next cycle will have ended (the heartbeat's "stale after").</summary>
    public DateTimeOffset Deadline => new(Interlocked.Read(ref _deadlineTicks), TimeSpan.Zero);

    /// <summary>A cycle ran: the next one's deadline.</summary>
    public void Expect(DateTimeOffset deadline) => Interlocked.Exchange(ref _deadlineTicks, deadline.UtcTicks);

    /// <summary>Ends with the deadline once it has passed with no new one set; cancelled when `run` stops.</summary>
    public async Task<DateTimeOffset> StaleAsync(CancellationToken stopping)
    {
        while (true)
        {
            var deadline = Deadline;
            if (deadline - time.GetUtcNow() is { Ticks: > 0 } wait)
            {
                // A deadline moved meanwhile is read again when this wait ends.
                await Task.Delay(wait, time, stopping);
                continue;
            }

            return deadline;
        }
    }
}
