using Microsoft.Azure.Functions.Worker;

namespace TokenRefresh.Functions;

/// <summary>The timer trigger: runs one refresh cycle. A cycle that cannot run fails the invocation, retried in 60 s.</summary>
public sealed class RefreshTokensFunction(RefreshCycle cycle)
{
    [Function("RefreshTokens")]
    [FixedDelayRetry(2, "00:01:00")]
#pragma warning disable IDE0060 // The trigger binds through the parameter; the cycle needs nothing from it.
    public async Task RunAsync([TimerTrigger("%REFRESH_SCHEDULE%")] TimerInfo timer, CancellationToken cancellationToken) =>
        await cycle.RunAsync(cancellationToken);
#pragma warning restore IDE0060
}
