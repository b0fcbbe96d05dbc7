using NCrontab;
using TokenRefresh.Persistence;

namespace TokenRefresh.Settings;

/// <summary>When cycles run, and how much one may do: the schedule, the budget, the calls in flight, a call's timeout.</summary>
public sealed record CycleSettings
{
    public const string DefaultSchedule = "0 */3 * * * *";

    public static readonly Setting ScheduleSetting = new("REFRESH_SCHEDULE", "NCRONTAB, UTC; six fields (with seconds) or five") { Default = DefaultSchedule };

    public static readonly Setting IntervalSetting = Setting.Number("REFRESH_INTERVAL_MINUTES", null, 1, 1440, "the original's setting: a cycle at start, then every N minutes");

    public static readonly Setting BudgetSetting = Setting.Number("CYCLE_BUDGET_SECONDS", 120, 5, 3600, "after this a cycle claims no new account");

    public static readonly Setting ConcurrencySetting = Setting.Number("REFRESH_MAX_CONCURRENCY", 16, 1, 256, "platform calls in flight at once, all platforms together");

    public static readonly Setting TimeoutSetting = Setting.Number("HTTP_TIMEOUT_SECONDS", 30, 1, 300, "timeout of one platform call");

    public static readonly Setting HeartbeatSetting = new("HEARTBEAT_FILE", "the file `run` writes after each cycle, for `tokenrefresh health`");

    public static readonly IReadOnlyList<Setting> Declared = [IntervalSetting, ScheduleSetting, TimeoutSetting, BudgetSetting, ConcurrencySetting, HeartbeatSetting];

    public string RefreshSchedule { get; init; } = DefaultSchedule;

    /// <summary>Whether REFRESH_SCHEDULE was set (the Functions host needs it; the CLI has a default).</summary>
    public bool RefreshScheduleSet { get; init; }

    /// <summary>REFRESH_INTERVAL_MINUTES, the original service's setting: a cycle at start, then every N minutes. Null when not set.</summary>
    public TimeSpan? RefreshInterval { get; init; }

    /// <summary>After this, a cycle claims no new account; in-flight ones finish. Well inside the 3-minute schedule.</summary>
    public TimeSpan CycleBudget { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Calls in flight at once in a cycle, all platforms together, shared fairly; the connection pool is sized to match.</summary>
    public int MaxConcurrency { get; init; } = 16;

    public TimeSpan HttpTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>HEARTBEAT_FILE: the file `run` touches after each cycle that ran (the image's HEALTHCHECK reads its age).</summary>
    public string? HeartbeatFile { get; init; }

    /// <summary>The shortest wait before an account whose last call had an unknown outcome is called again, twice the HTTP timeout (60 s by default): no retry races a request still in flight.</summary>
    public TimeSpan UnknownOutcomeWait => HttpTimeout * 2;

    /// <summary>
    /// How long a claim's lease lasts: longer than anything its holder may still do with the token. A claimed call may
    /// wait for a new permit until the cycle's budget ends, then take the HTTP timeout, and then its pair's write is
    /// retried for at least 30 s; so the budget, the HTTP timeout and 30 s, and never less than the wait after an
    /// unknown outcome. A lease in force always means a request that may still be answered, or a pair that may still
    /// be stored.
    /// </summary>
    public TimeSpan LeaseLength
    {
        get
        {
            var covers = CycleBudget + HttpTimeout + DatabaseRetry.MinimumWindow;
            return covers > UnknownOutcomeWait ? covers : UnknownOutcomeWait;
        }
    }

    /// <summary>How long a failed cycle waits before it is tried again (Function retry and CLI <c>run</c>).</summary>
    public static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(60);

    public CrontabSchedule Schedule => ParseSchedule(RefreshSchedule)!;

    /// <exception cref="SettingsException">A setting is missing or malformed.</exception>
    public static CycleSettings Read(SettingsReader read)
    {
        var schedule = read.Text(ScheduleSetting) ?? DefaultSchedule;
        if (ParseSchedule(schedule) is not { } parsed)
        {
            throw new SettingsException($"REFRESH_SCHEDULE '{schedule}' is not an NCRONTAB expression (six fields with seconds, e.g. '{DefaultSchedule}').");
        }

        TimeSpan? interval = read.OptionalNumber(IntervalSetting) is { } minutes ? TimeSpan.FromMinutes(minutes) : null;
        if (interval is { } every && read.IsSet(ScheduleSetting) && Cadence(parsed) != every)
        {
            var runs = Cadence(parsed) is { } cadence ? $"runs every {cadence.TotalMinutes:0.##} minutes" : "does not run at a fixed interval";
            throw new SettingsException(
                $"REFRESH_INTERVAL_MINUTES={every.TotalMinutes} and REFRESH_SCHEDULE '{schedule}' (which {runs}) disagree; set only one of them.");
        }

        return new CycleSettings
        {
            RefreshSchedule = schedule,
            RefreshScheduleSet = read.IsSet(ScheduleSetting),
            RefreshInterval = interval,
            HttpTimeout = TimeSpan.FromSeconds(read.Number(TimeoutSetting)),
            CycleBudget = TimeSpan.FromSeconds(read.Number(BudgetSetting)),
            MaxConcurrency = read.Number(ConcurrencySetting),
            HeartbeatFile = read.Text(HeartbeatSetting),
        };
    }

    /// <summary>
    /// Stops an Azure Functions worker whose schedule the host could not follow: the host, not the worker, runs the
    /// timer, from REFRESH_SCHEDULE alone (REFRESH_INTERVAL_MINUTES, the original's setting, means nothing to it).
    /// </summary>
    /// <exception cref="SettingsException">REFRESH_SCHEDULE is not set; the message says what to set.</exception>
    public void RequireFunctionsSchedule()
    {
        if (RefreshScheduleSet)
        {
            return;
        }

        throw new SettingsException(RefreshInterval is { } every
            ? $"REFRESH_INTERVAL_MINUTES={every.TotalMinutes} is not read by the Functions host, which runs the timer from REFRESH_SCHEDULE: {Suggest(every)}."
            : $"REFRESH_SCHEDULE is not set: the Functions host runs the timer from it; set it, e.g. '{DefaultSchedule}' (every 3 minutes).");
    }

    private static string Suggest(TimeSpan every) => (int)every.TotalMinutes switch
    {
        var n when 60 % n == 0 => $"set REFRESH_SCHEDULE='0 */{n} * * * *' instead",
        var n when n % 60 == 0 && 24 % (n / 60) == 0 => $"set REFRESH_SCHEDULE='0 0 */{n / 60} * * *' instead",
        var n => $"no schedule runs exactly every {n} minutes; set REFRESH_SCHEDULE to one that divides the hour, e.g. '0 */5 * * * *'",
    };

    /// <summary>The fixed interval between the schedule's runs over a day, or null when they are not evenly spaced.</summary>
    private static TimeSpan? Cadence(CrontabSchedule schedule)
    {
        var start = new DateTime(2026, 1, 5, 0, 0, 0, DateTimeKind.Utc);
        var runs = schedule.GetNextOccurrences(start.AddTicks(-1), start.AddDays(1)).ToList();
        if (runs.Count == 0)
        {
            return null;
        }

        var gaps = runs.Zip(runs.Skip(1), (a, b) => b - a).Append(start.AddDays(1) - runs[^1] + (runs[0] - start)).Distinct().ToList();
        return gaps.Count == 1 ? gaps[0] : null;
    }

    private static CrontabSchedule? ParseSchedule(string expression)
    {
        var fields = expression.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
        return fields is 5 or 6
            ? CrontabSchedule.TryParse(expression, new CrontabSchedule.ParseOptions { IncludingSeconds = fields == 6 })
            : null;
    }
}
