namespace TokenRefresh;

/// <summary>One platform's outcomes in one cycle, counted from accounts processed in parallel.</summary>
internal sealed class Tally(PlatformInfo platform)
{
    private readonly Lock _lock = new();
    private PlatformSummary _summary = new(platform.Name, platform.SuccessOutcome);

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
