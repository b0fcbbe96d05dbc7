namespace TokenRefresh;

/// <summary>Counts for one platform in one cycle.</summary>
public sealed record PlatformSummary(string Platform, Outcome SuccessOutcome)
{
    public int Found { get; init; }
    public int Succeeded { get; init; }
    public int Deactivated { get; init; }
    public int Failed { get; init; }
    public int Skipped { get; init; }

    /// <summary>Due accounts not started because the cycle's budget was spent or the process is stopping.</summary>
    public int LeftOver { get; init; }

    /// <summary>The platform could not run at all (database unreachable, unexpected error).</summary>
    public bool Crashed { get; init; }

    /// <summary>An optional platform that did not run, and why (its table is missing): it stops only itself.</summary>
    public string? NotRun { get; init; }

    /// <summary>From the cycle's start until this platform's last account was done.</summary>
    public TimeSpan Duration { get; init; }

    public PlatformSummary Add(AccountResult result) => result.Outcome switch
    {
        Outcome.Deactivated => this with { Found = Found + 1, Deactivated = Deactivated + 1 },
        Outcome.Failed => this with { Found = Found + 1, Failed = Failed + 1 },
        Outcome.Skipped => this with { Found = Found + 1, Skipped = Skipped + 1 },
        _ => this with { Found = Found + 1, Succeeded = Succeeded + 1 },
    };

    /// <summary>E.g. "X: 2/3 refreshed, 1 failed" or "Y: 3/5 validated, 1 deactivated, 1 failed".</summary>
    public override string ToString()
    {
        if (Crashed)
        {
            return $"{Platform}: cycle failed after {Succeeded}/{Found} {Verb}";
        }

        if (NotRun is not null)
        {
            return $"{Platform}: not run ({NotRun})";
        }

        var text = $"{Platform}: {Succeeded}/{Found} {Verb}";
        if (SuccessOutcome == Outcome.Validated)
        {
            text += $", {Deactivated} deactivated";
        }

        text += $", {Failed} failed";
        if (Skipped > 0)
        {
            text += $", {Skipped} skipped";
        }

        return LeftOver > 0 ? text + $", {LeftOver} left for the next cycle" : text;
    }

    private string Verb => SuccessOutcome.ToString().ToLowerInvariant();
}

/// <summary>One cycle's result: a line per platform and the time it took.</summary>
public sealed record CycleSummary(IReadOnlyList<PlatformSummary> Platforms, TimeSpan Duration)
{
    public bool AnyFailed => Platforms.Any(p => p.Failed > 0 || p.Crashed || p.NotRun is not null);

    public bool Crashed => Platforms.Any(p => p.Crashed);

    /// <summary>The budget ran out with accounts left: a backlog, which `run` goes on with at once instead of at the next tick.</summary>
    public bool BudgetSpent { get; init; }

    /// <summary>Per-platform and total counts by name (e.g. XRefreshed, YDeactivated, Failed).</summary>
    public Dictionary<string, object> Properties()
    {
        var properties = new Dictionary<string, object>();
        foreach (var p in Platforms)
        {
            var key = p.Platform.Replace(" ", "", StringComparison.Ordinal);
            properties[key + "Found"] = p.Found;
            properties[key + p.SuccessOutcome] = p.Succeeded;
            properties[key + "Deactivated"] = p.Deactivated;
            properties[key + "Failed"] = p.Failed;
            properties[key + "Skipped"] = p.Skipped;
            properties[key + "LeftOver"] = p.LeftOver;
            properties[key + "DurationMs"] = Math.Round(p.Duration.TotalMilliseconds);
        }

        properties["Accounts"] = Platforms.Sum(p => p.Found);
        properties["Succeeded"] = Platforms.Sum(p => p.Succeeded);
        properties["Deactivated"] = Platforms.Sum(p => p.Deactivated);
        properties["Failed"] = Platforms.Sum(p => p.Failed);
        properties["Skipped"] = Platforms.Sum(p => p.Skipped);
        properties["LeftOver"] = Platforms.Sum(p => p.LeftOver);
        return properties;
    }

    public override string ToString() => string.Join("; ", Platforms);
}
