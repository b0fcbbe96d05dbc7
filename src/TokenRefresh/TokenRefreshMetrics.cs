using System.Diagnostics.Metrics;
using TokenRefresh.Platforms;

namespace TokenRefresh;

/// <summary>
/// The service's metrics (System.Diagnostics.Metrics, meter "TokenRefresh"): outcomes per platform,
/// cycle duration, platform call latency, accounts left over by the budget, accounts needing re-authorisation, and a
/// platform's daily quota with what the refreshes take of it.
/// </summary>
public sealed class TokenRefreshMetrics
{
    public const string MeterName = "TokenRefresh";

    /// <summary>
    /// The one name metrics and traces carry (service.name; Application Insights' cloud_RoleName): OTEL_SERVICE_NAME,
    /// else the Function app's name as Azure sets it (WEBSITE_SITE_NAME), else "tokenrefresh".
    /// </summary>
    public static string ServiceName(Microsoft.Extensions.Configuration.IConfiguration configuration) =>
        new[] { configuration[Settings.LoggingSettings.ServiceNameSetting.Name], configuration["WEBSITE_SITE_NAME"] }.FirstOrDefault(n => !string.IsNullOrWhiteSpace(n))?.Trim()
        ?? "tokenrefresh";

    private readonly Counter<long> _accounts;
    private readonly Counter<long> _cycles;
    private readonly Histogram<double> _cycleDuration;
    private readonly Histogram<double> _callDuration;
    private readonly Counter<long> _leftOver;
    private readonly Gauge<long> _needsReauth;
    private readonly Counter<long> _deactivationPaused;
    private readonly Gauge<long> _quotaPerDay;
    private readonly Gauge<long> _quotaRemaining;
    private readonly Gauge<double> _refreshesPerDay;

    public TokenRefreshMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _accounts = meter.CreateCounter<long>("tokenrefresh.accounts", "{account}", "Accounts processed, by platform, outcome and failure kind");
        _cycles = meter.CreateCounter<long>("tokenrefresh.cycles", "{cycle}", "Refresh cycles, by result (ok or failed)");
        _cycleDuration = meter.CreateHistogram<double>("tokenrefresh.cycle.duration", "s", "Duration of a refresh cycle");
        _callDuration = meter.CreateHistogram<double>("tokenrefresh.platform.call.duration", "s", "Latency of a platform call, by platform, operation and result");
        _leftOver = meter.CreateCounter<long>("tokenrefresh.accounts.left_over", "{account}", "Due accounts left for the next cycle when the budget was spent or the process stopped");
        _deactivationPaused = meter.CreateCounter<long>("tokenrefresh.deactivations.paused", "{account}", "Stores rejected (401) while the incident guard paused deactivation; they stay active");
        _quotaPerDay = meter.CreateGauge<long>("tokenrefresh.quota.per_day", "{request}", "The platform's daily request quota per API key, as its last answer gave it");
        _quotaRemaining = meter.CreateGauge<long>("tokenrefresh.quota.remaining", "{request}", "Requests left of the daily quota, as the platform's last answer gave it");
        _refreshesPerDay = meter.CreateGauge<double>("tokenrefresh.quota.refreshes_per_day", "{request}", "Requests a day the refreshes alone take at the current account count");
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

    public void DailyQuota(string platform, int? perDay, int? remaining, double refreshesPerDay)
    {
        var tag = new KeyValuePair<string, object?>("platform", platform);
        _refreshesPerDay.Record(refreshesPerDay, tag);
        if (perDay is { } limit)
        {
            _quotaPerDay.Record(limit, tag);
        }

        if (remaining is { } left)
        {
            _quotaRemaining.Record(left, tag);
        }
    }

    public void NeedsReauth(string platform, long count) => _needsReauth.Record(count, new KeyValuePair<string, object?>("platform", platform));
}
