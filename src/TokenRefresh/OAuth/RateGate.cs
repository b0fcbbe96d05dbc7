namespace TokenRefresh.OAuth;

/// <summary>
/// For a platform whose limits are per API key (Etsy): after a 429 with Retry-After, every call of this
/// process to that platform waits until then. Shared across cycles (a singleton per platform).
/// </summary>
internal sealed class RateGate(TimeProvider time)
{
    private long _pausedUntilTicks;

    public void Pause(TimeSpan retryAfter)
    {
        var until = (time.GetUtcNow() + retryAfter).UtcTicks;
        long seen;
        while ((seen = Interlocked.Read(ref _pausedUntilTicks)) < until
            && Interlocked.CompareExchange(ref _pausedUntilTicks, until, seen) != seen)
        {
        }
    }

    /// <summary>Waits out a pause; false when it lasts past <paramref name="deadline"/> (the call is then left for later).</summary>
    public async Task<bool> WaitAsync(DateTimeOffset deadline, CancellationToken cancellationToken)
    {
        var until = new DateTimeOffset(Interlocked.Read(ref _pausedUntilTicks), TimeSpan.Zero);
        var now = time.GetUtcNow();
        if (until <= now)
        {
            return true;
        }

        if (until > deadline)
        {
            return false;
        }

        await Task.Delay(until - now, time, cancellationToken);
        return true;
    }
}
