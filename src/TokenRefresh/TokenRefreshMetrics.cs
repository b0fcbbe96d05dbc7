using System.Diagnostics.Metrics;

namespace TokenRefresh;

/// <summary>
/// The service's metrics (System.Diagnostics.Metrics, meter "TokenRefresh"): outcomes per platform,
/// cycle duration, platform call latency, accounts left over by the budget, accounts needing re-authorisation.
/// </summary>
public sealed class TokenRefreshMetrics
{
    public const string MeterName = "TokenRefresh";

    private readonly Counter<long> _accounts;
    private readonly Counter<long> _cycles;
    private readonly Histogram<double> _cycleDuration;
    private readonly Histogram<double> _callDuration;
    private readonly Counter<long> _leftOver;
    private readonly Gauge<long> _needsReauth;
    private readonly Counter<long> _deactivationPaused;

    public TokenRefreshMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _accounts = meter.CreateCounter<long>("tokenrefresh.accounts", "{account}", "Accounts processed, by platform, outcome and failure kind");
        _cycles = meter.CreateCounter<long>("tokenrefresh.cycles", "{cycle}", "Refresh cycles, by result (ok or failed)");
        _cycleDuration = meter.CreateHistogram<double>("tokenrefresh.cycle.duration", "s", "Duration of a refresh cycle");
        _callDuration = meter.CreateHistogram<double>("tokenrefresh.platform.call.duration", "s", "Latency of a platform call, by platform, operation and result");
        _leftOver = meter.CreateCounter<long>("tokenrefresh.accounts.left_over", "{account}", "Due accounts left for the next cycle when the budget was spent or the process stopped");
        _deactivationPaused = meter.CreateCounter<long>("tokenrefresh.deactivations.paused", "{account}", "Stores rejected (401) while the incident guard paused deactivation; they stay active");
        _needsReauth = meter.CreateGauge<long>("tokenrefresh.accounts.needs_reauth", "{account}", "Accounts waiting for the user to re-authorise, by platform");
    }

    public void AccountProcessed(string platform, AccountResult result) => _accounts.Add(1,
        new("platform", platform),
        new("outcome", result.Outcome.ToString().ToLowerInvariant()),
        new("failure", result.Outcome != Outcome.Failed ? "none" : result.Transient ? "transient" : "permanent"));

    public void CycleCompleted(CycleSummary summary)
    {
        var result = summary.Crashed ? "failed" : "ok";
        _cycles.Add(1, new KeyValuePair<string, object?>("result", result));
        _cycleDuration.Record(summary.Duration.TotalSeconds, new KeyValuePair<string, object?>("result", result));
        foreach (var platform in summary.Platforms)
        {
            _leftOver.Add(platform.LeftOver, new KeyValuePair<string, object?>("platform", platform.Platform));
        }
    }

    public void PlatformCall(string platform, string operation, CallStatus status, TimeSpan elapsed) => _callDuration.Record(
        elapsed.TotalSeconds, new("platform", platform), new("operation", operation), new("result", status.ToString().ToLowerInvariant()));

    public void DeactivationPaused(string platform) => _deactivationPaused.Add(1, new KeyValuePair<string, object?>("platform", platform));

    public void NeedsReauth(string platform, long count) => _needsReauth.Record(count, new KeyValuePair<string, object?>("platform", platform));
}
