namespace TokenRefresh.Scheduling;

/// <summary>A platform's calls per second: when the next call may start. Comes before the claim, so no account is claimed while it waits.</summary>
internal interface IPermits
{
    /// <summary>
    /// Waits until one more call may start, after any 429 pause. Once it may: no reason, and how long ago the permit's
    /// moment was (its call must leave within <see cref="Permit.Grace"/> of it); else why not, and the platform's other
    /// accounts are left for a later cycle.
    /// </summary>
    Task<(string? NotNow, TimeSpan Late)> WaitAsync(DateTimeOffset deadline, CancellationToken claiming);

    /// <summary>
    /// A permit if one can be had without waiting or asking the database, its moment come or coming within
    /// <paramref name="ahead"/>: how long ago its moment was (negative: how long until it comes); null when there is none.
    /// </summary>
    TimeSpan? TryTake(TimeSpan ahead);

    /// <summary>Whether the last reservation's moments lay ahead: the rate, not the database's round trip, holds the calls back.</summary>
    bool RateBound { get; }

    /// <summary>The clock a permit's moment is kept by: real time, as the database's clock is (the cycle's may be a test's).</summary>
    TimeProvider Clock { get; }
}

internal static class Permit
{
    /// <summary>How late after its moment a rate-limit permit may still be used.</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromMilliseconds(25);
}

/// <summary>A platform whose limits are per store or per account: every call may start at once.</summary>
internal sealed class NoRateLimit : IPermits
{
    public static readonly NoRateLimit Instance = new();

    private NoRateLimit()
    {
    }

    public Task<(string? NotNow, TimeSpan Late)> WaitAsync(DateTimeOffset deadline, CancellationToken claiming) => Task.FromResult<(string?, TimeSpan)>((null, default));

    public TimeSpan? TryTake(TimeSpan ahead) => TimeSpan.Zero;

    public bool RateBound => false;

    public TimeProvider Clock => TimeProvider.System;
}
