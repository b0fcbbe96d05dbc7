namespace TokenRefresh;

/// <summary>What happened to one account in one cycle.</summary>
public enum Outcome
{
    Refreshed,
    Validated,
    Deactivated,
    Failed,
    Skipped,
}

/// <summary>The outcome of one account, with a short machine-readable reason for anything but success.</summary>
public sealed record AccountResult(Outcome Outcome, string? Reason = null, bool Transient = false)
{
    /// <summary>Not started, and nothing more of this platform should start this cycle (e.g. a 429 pause past the budget).</summary>
    public bool Deferred { get; init; }

    /// <summary>Decided when the platform's cycle ends (<see cref="IPlatformRefresher.FinishCycleAsync"/> reports it then): not counted now.</summary>
    public bool Pending { get; init; }

    /// <summary>Its line is at Debug: its platform says the cycle's failures of this kind in one line (a wave of them is one line, not thousands).</summary>
    public bool Quiet { get; init; }

    /// <summary>The account was flagged needs_reauth now: only its user can bring it back (announced, docs/reauth.md).</summary>
    public bool NeedsUser { get; init; }

    public static readonly AccountResult DecidedLater = new(Outcome.Skipped, "decided at the end of the cycle") { Pending = true };

    public static AccountResult Defer(string reason) => new(Outcome.Skipped, reason) { Deferred = true };

    /// <summary>This account failed for a reason that is the platform's, not its own (refused credentials): it counts as failed, nothing more of this platform starts this cycle.</summary>
    public static AccountResult StopPlatform(string reason) => new(Outcome.Failed, reason) { Deferred = true };

    public static AccountResult Success(Outcome outcome) => new(outcome);

    /// <summary>Worth trying again next cycle: network, timeout, 429, 5xx, malformed response.</summary>
    public static AccountResult TransientFailure(string reason) => new(Outcome.Failed, reason, Transient: true);

    /// <summary>Will fail again until something changes: revoked grant, bad client, unavailable shop.</summary>
    public static AccountResult PermanentFailure(string reason) => new(Outcome.Failed, reason);

    public static AccountResult Skip(string reason) => new(Outcome.Skipped, reason);
}

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

    /// <summary>From the cycle's start until this platform's last account was done.</summary>
    public TimeSpan Duration { get; init; }

    public PlatformSummary Add(AccountResult result) => result.Outcome switch
    {
        Outcome.Deactivated => this with { Found = Found + 1, Deactivated = Deactivated + 1 },
        Outcome.Failed => this with { Found = Found + 1, Failed = Failed + 1 },
        Outcome.Skipped => this with { Found = Found + 1, Skipped = Skipped + 1 },
        _ => this with { Found = Found + 1, Succeeded = Succeeded + 1 },
    };

    /// <summary>E.g. "Etsy: 2/3 refreshed, 1 failed" or "Shopify: 3/5 validated, 1 deactivated, 1 failed".</summary>
    public override string ToString()
    {
        if (Crashed)
        {
            return $"{Platform}: cycle failed after {Succeeded}/{Found} {Verb}";
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
    public bool AnyFailed => Platforms.Any(p => p.Failed > 0 || p.Crashed);

    public bool Crashed => Platforms.Any(p => p.Crashed);

    /// <summary>Per-platform and total counts by name (e.g. EtsyRefreshed, ShopifyDeactivated, Failed).</summary>
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
