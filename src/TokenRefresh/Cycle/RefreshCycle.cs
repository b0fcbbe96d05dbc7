using Microsoft.Extensions.Logging;
using TokenRefresh.Scheduling;
using TokenRefresh.Settings;

namespace TokenRefresh;

/// <summary>The cycle failed as a whole (database unreachable, unexpected error); the caller retries later.</summary>
public sealed class CycleFailedException(CycleSummary summary, Exception inner) : Exception($"The refresh cycle failed: {summary}", inner)
{
    /// <summary>What the cycle did before it failed (already logged).</summary>
    public CycleSummary Summary { get; } = summary;
}

/// <summary>
/// One refresh cycle: every registered platform's run side by side, then one summary event and the re-authorisation
/// webhook. All of a cycle's state is made when it starts (<see cref="CycleContext"/>, a <see cref="PlatformRun"/>
/// per platform), so one instance serves every cycle.
/// </summary>
public sealed partial class RefreshCycle
{
    private readonly IEnumerable<IPlatform> _platforms;
    private readonly CycleSettings _settings;
    private readonly LoggingSettings _logging;
    private readonly TimeProvider _time;
    private readonly TokenRefreshMetrics _metrics;
    private readonly PlatformHealthRegistry _health;
    private readonly ReauthWebhook _webhook;
    private readonly ILogger<RefreshCycle> _logger;

    internal RefreshCycle(
        IEnumerable<IPlatform> platforms, CycleSettings settings, LoggingSettings logging, TimeProvider time, TokenRefreshMetrics metrics,
        PlatformHealthRegistry health, ReauthWebhook webhook, ILogger<RefreshCycle> logger)
    {
        (_platforms, _settings, _logging, _time, _metrics, _health, _webhook, _logger) = (platforms, settings, logging, time, metrics, health, webhook, logger);
    }

    /// <summary>
    /// Runs one cycle, the _platforms side by side. When the budget is spent or <paramref name="stopping"/> fires,
    /// no new account is claimed; in-flight ones finish, and the rest are counted as left for the next cycle.
    /// </summary>
    /// <exception cref="CycleFailedException">A platform could not run; the summary was logged first.</exception>
    public async Task<CycleSummary> RunAsync(CancellationToken stopping = default)
    {
        using var cycle = NewCycle(stopping);
        Log.CycleStarted(_logger);
        var runs = _platforms.Select(Run(cycle)).ToList();
        var outcomes = await Task.WhenAll(runs.Select(r => r.RunAsync()));

        var platforms = outcomes.Select(o => o.Summary).OfType<PlatformSummary>().ToList();
        var summary = new CycleSummary(platforms, cycle.Elapsed) { BudgetSpent = cycle.BudgetSpent && platforms.Any(p => p.LeftOver > 0) };
        LogSummary(summary);
        _metrics.CycleCompleted(summary);
        // After the summary, within its own short budget: a receiver that is down delays the cycle's end by at most that.
        await _webhook.DeliverAsync(cycle.Recorder.Reauth, cycle.Recorder.ReauthBeyond, stopping);
        return outcomes.Select(o => o.Error).FirstOrDefault(e => e is not null) is { } failure ? throw new CycleFailedException(summary, failure) : summary;
    }

    /// <summary>
    /// Refreshes (through the same claim) or validates one named account now (`tokenrefresh refresh --OPTION KEY`), with
    /// the same guarantees as a cycle, whether it is due or backing off, but never while an earlier request with its
    /// token may still be in flight. Null when no platform has such an account.
    /// </summary>
    public async Task<(string Platform, DueAccount Account, AccountResult Result)?> ForceAsync(string option, string key, CancellationToken cancellationToken = default)
    {
        using var cycle = NewCycle(cancellationToken);
        foreach (var platform in _platforms.Where(p => p.Info.Option.Name == option))
        {
            if (await Run(cycle)(platform).ForceAsync(key) is { } done)
            {
                await _webhook.DeliverAsync(cycle.Recorder.Reauth, cycle.Recorder.ReauthBeyond, cancellationToken);
                return (platform.Info.Name, done.Account, done.Result);
            }
        }

        return null;
    }

    private CycleContext NewCycle(CancellationToken stopping) => new(
        _time, _settings.CycleBudget, new CallSlots(_settings.MaxConcurrency, Caps()), new AccountRecorder(_logger, _metrics, _logging.LogAccountSuccess, _time), stopping);

    private Func<IPlatform, PlatformRun> Run(CycleContext cycle) => platform => new PlatformRun(platform, cycle, _health.For(platform.Info.Lane), _logger);

    // A lane's own cap, as its platforms declare it.
    private Dictionary<string, int> Caps() =>
        _platforms.Select(p => p.Info).Where(i => i.LaneCap is not null).DistinctBy(i => i.Lane).ToDictionary(i => i.Lane, i => i.LaneCap!.Value);

    private void LogSummary(CycleSummary summary)
    {
        // The counts as named properties (e.g. <Platform>Refreshed, <Platform>Deactivated) on the one summary event.
        using var scope = _logger.BeginScope(summary.Properties());
        var level = summary.Crashed ? LogLevel.Error : summary.AnyFailed ? LogLevel.Warning : LogLevel.Information;
        Log.CycleCompleted(_logger, level, Math.Round(summary.Duration.TotalMilliseconds), summary.ToString());
    }
}
