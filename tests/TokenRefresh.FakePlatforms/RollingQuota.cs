namespace TokenRefresh.FakePlatforms;

/// <summary>
/// A daily quota as Etsy counts it (CONTRACTS.md): at most the limit of requests answered in any rolling window (24
/// hours; shorter for a compressed day); past it, a request is refused with how long until the oldest leaves the window.
/// </summary>
public sealed class RollingQuota(Func<int> limit)
{
    private readonly Queue<DateTimeOffset> _answered = new();
    private int _refusals;

    /// <summary>Whether the quota is enforced; off by default, so that a test's calls are never refused for it.</summary>
    public bool Enforced { get; set; }

    /// <summary>The rolling window.</summary>
    public TimeSpan Window { get; set; } = TimeSpan.FromDays(1);

    /// <summary>Requests refused because the quota was spent.</summary>
    public int Refusals
    {
        get
        {
            lock (_answered)
            {
                return _refusals;
            }
        }
    }

    /// <summary>Requests answered within the window.</summary>
    public int Taken
    {
        get
        {
            lock (_answered)
            {
                return _answered.Count;
            }
        }
    }

    /// <summary>Null when the request may be answered (it takes its place in the window); else how long until one may.</summary>
    public TimeSpan? Take(DateTimeOffset now)
    {
        if (!Enforced)
        {
            return null;
        }

        lock (_answered)
        {
            while (_answered.TryPeek(out var oldest) && oldest <= now - Window)
            {
                _answered.Dequeue();
            }

            if (_answered.Count < limit())
            {
                _answered.Enqueue(now);
                return null;
            }

            _refusals++;
            return _answered.TryPeek(out var first) ? first + Window - now : Window;
        }
    }
}
