using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Functions;

/// <summary>The timer trigger: runs one refresh cycle. A cycle that cannot run fails the invocation, retried in 60 s.</summary>
public sealed class RefreshTokensFunction(RefreshCycle cycle, ILogger<RefreshTokensFunction> logger)
{
    /// <summary>The host-side record of each cycle: its duration in ms, with the summary's counts as named properties.</summary>
    public const string CycleMetric = "TokenRefreshCycleMs";

    [Function("RefreshTokens")]
    [FixedDelayRetry(2, "00:01:00")]
#pragma warning disable IDE0060 // The trigger binds through the parameter; the cycle needs nothing from it.
    public async Task RunAsync([TimerTrigger("%REFRESH_SCHEDULE%")] TimerInfo timer, CancellationToken cancellationToken)
#pragma warning restore IDE0060
    {
        CycleSummary summary;
        try
        {
            summary = await cycle.RunAsync(cancellationToken);
        }
        catch (CycleFailedException e)
        {
            Report(e.Summary);
            throw;
        }

        Report(summary);
    }

    // The host's log stream carries only the message of a worker's log; a Functions metric carries named properties.
    private void Report(CycleSummary summary) =>
        logger.LogMetric(CycleMetric, Math.Round(summary.Duration.TotalMilliseconds), summary.Properties());
}
