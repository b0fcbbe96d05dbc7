namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// Every integration test's time limit, as a cancellation token of its own (xunit's Timeout is undefined for tests run
/// in parallel): what a test waits on observes it (the cycles it runs, the processes it starts, its polling loops), so a
/// hang fails that test, and ends what it started, instead of stalling the whole run.
/// </summary>
public static class TestDeadline
{
    /// <summary>Far above the slowest test here (about 50 s), so only a hang reaches it.</summary>
    public static readonly TimeSpan Limit = TimeSpan.FromMinutes(3);

    /// <summary>A new deadline, from now: one per test (its harness makes it), disposed with it.</summary>
    public static CancellationTokenSource Start() => new(Limit);
}
