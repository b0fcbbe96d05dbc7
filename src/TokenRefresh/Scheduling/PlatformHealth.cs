using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Scheduling;

/// <summary>
/// Tells a platform's outage from an account's own failure. When <see cref="Threshold"/> calls in a row fail with a
/// server error, a timeout or a network fault, with no answer in between, the platform is down: its accounts' failures
/// are then the platform's, not theirs (no backoff of their own), and a cycle sends one account as a probe instead of
/// them all. The first answer (any answer but a 429) ends the outage, and the next cycle refreshes everything due: each
/// platform of the group then takes the ended outage (<see cref="TakeEndedOutage"/>) and lifts the waits its accounts
/// got from it. One per platform group and process, kept across cycles; each replica judges for itself.
/// </summary>
public sealed partial class PlatformHealth(string platform, TimeProvider time, ILogger logger)
{
    /// <summary>Failures in a row, with no answer between them, that make a platform down.</summary>
    public const int Threshold = 5;

    private readonly Lock _lock = new();
    private int _failuresInARow;
    private string? _lastReason;
    private DateTimeOffset? _downSince;
    private DateTimeOffset? _firstFailureAt;
    private (long Number, DateTimeOffset From)? _lastOutage;
    private readonly Dictionary<string, long> _outagesTaken = new(StringComparer.Ordinal);
    private long _recorded;

    /// <summary>How many calls' results were recorded: a probe that made no call (another replica had its account) shows none.</summary>
    public long Recorded => Interlocked.Read(ref _recorded);

    /// <summary>Whether the platform is down now: a cycle then sends one account as a probe, and leaves the rest.</summary>
    public bool IsDown
    {
        get
        {
            lock (_lock)
            {
                return _downSince is not null;
            }
        }
    }

    /// <summary>Why it is down, for the cycle's line; null while it is up.</summary>
    public string? Why
    {
        get
        {
            lock (_lock)
            {
                return _downSince is { } since
                    ? $"the platform looks down since {since:HH:mm:ss} UTC ({_failuresInARow} calls in a row failed, the last with {_lastReason}); one account is tried each cycle until it answers"
                    : null;
            }
        }
    }

    /// <summary>A failure that says nothing about the account: the platform did not answer, or answered with a server error.</summary>
    public static bool IsPlatformSide(string? reason) =>
        PlatformSideReasons.Contains(reason) || reason?.StartsWith(ServerErrorPrefix, StringComparison.Ordinal) == true;

    /// <summary>The reasons of <see cref="IsPlatformSide"/>, besides those that start with <see cref="ServerErrorPrefix"/>.</summary>
    public static readonly string[] PlatformSideReasons = ["timeout", "network_error", "connection_failed", "internal_server_error"];

    public const string ServerErrorPrefix = "server_error_";

    /// <summary>A 429, or a throttled answer: an answer about our pace, neither the account's failure nor the platform's.</summary>
    public static bool IsRateLimited(string? reason) => reason is "rate_limited" or "throttled";

    /// <summary>
    /// Records a call's result, by its failure's reason (null: it succeeded); true when the platform is down once it is
    /// counted (the failure is then the platform's).
    /// </summary>
    internal bool Record(string? reason)
    {
        Interlocked.Increment(ref _recorded);
        lock (_lock)
        {
            if (IsPlatformSide(reason))
            {
                _firstFailureAt ??= time.GetUtcNow();
                _failuresInARow++;
                _lastReason = reason;
                if (_downSince is null && _failuresInARow >= Threshold)
                {
                    _downSince = time.GetUtcNow();
                    Log.Down(logger, platform, _failuresInARow, reason!);
                }

                return _downSince is not null;
            }

            // An answer about our pace, not the platform's health: it neither counts nor ends an outage.
            if (IsRateLimited(reason))
            {
                return false;
            }

            if (_downSince is { } since)
            {
                Log.Up(logger, platform, Math.Round((time.GetUtcNow() - since).TotalSeconds));
                _lastOutage = ((_lastOutage?.Number ?? 0) + 1, _firstFailureAt ?? since);
            }

            _failuresInARow = 0;
            _downSince = null;
            _firstFailureAt = null;
            return false;
        }
    }

    /// <summary>
    /// When the last outage began (its first failure), once for each platform of the group after the outage ended; null
    /// when none ended since that platform last asked.
    /// </summary>
    internal DateTimeOffset? TakeEndedOutage(string platformId)
    {
        lock (_lock)
        {
            if (_lastOutage is not { } outage || _outagesTaken.GetValueOrDefault(platformId) >= outage.Number)
            {
                return null;
            }

            _outagesTaken[platformId] = outage.Number;
            return outage.From;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(15, LogLevel.Error, "{Platform}: the platform looks down: {Failures} calls in a row failed ({Reason}) with no answer between them. Its accounts are not backed off for it: one is tried each cycle, and the rest follow as soon as it answers")]
        public static partial void Down(ILogger logger, string platform, int failures, string reason);

        [LoggerMessage(16, LogLevel.Information, "{Platform}: the platform answers again after {Seconds} s; its accounts are refreshed as they fall due")]
        public static partial void Up(ILogger logger, string platform, double seconds);
    }
}

/// <summary>The <see cref="PlatformHealth"/> of each platform lane, for the life of the process.</summary>
public sealed class PlatformHealthRegistry(TimeProvider time, ILoggerFactory loggers)
{
    private readonly ConcurrentDictionary<string, PlatformHealth> _health = new(StringComparer.Ordinal);

    public PlatformHealth For(string group) =>
        _health.GetOrAdd(group, g => new PlatformHealth(g, time, loggers.CreateLogger("TokenRefresh.PlatformHealth")));
}
