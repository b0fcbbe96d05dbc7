namespace TokenRefresh;

/// <summary>An account found due this cycle. <paramref name="Problem"/> set means: skip it with a warning.</summary>
public sealed record DueAccount(string Id, string? Label = null, string? Problem = null)
{
    /// <summary>Forced by an operator (`tokenrefresh refresh`): due or not, backing off or not; the claim still holds.</summary>
    internal bool Forced { get; init; }

    /// <summary>The moment of the rate-limit permit for this account's call (a <see cref="TimeProvider"/> timestamp); null: none was needed.</summary>
    internal long? PermittedAt { get; init; }

    /// <summary>The token and state the claim (or, for validation, the page) read.</summary>
    internal Persistence.ClaimedToken? Claimed { get; init; }

    /// <summary>The same account: its id, label and problem (what a claim read, and when, rides along).</summary>
    public bool Equals(DueAccount? other) => other is not null && Id == other.Id && Label == other.Label && Problem == other.Problem;

    public override int GetHashCode() => HashCode.Combine(Id, Label, Problem);

    /// <summary>How log lines name the account: its id, and its shop domain where it has one. Never a token.</summary>
    public override string ToString() => Label is null ? $"account {Id}" : $"store {Label} ({Id})";
}

/// <summary>Claiming an account: the <paramref name="Account"/> to process, carrying what the claim read; or, when it is not processed now, its <paramref name="Result"/>.</summary>
public sealed record Claim(DueAccount? Account, AccountResult? Result = null);

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

    /// <summary>Decided when the platform's cycle ends (<see cref="IPlatformCycle.FinishAsync"/> reports it then): not counted now.</summary>
    public bool Pending { get; init; }

    /// <summary>The account was flagged needs_reauth now: only its user can bring it back (announced, docs/reauth.md).</summary>
    public bool NeedsUser { get; init; }

    /// <summary>Its line is at Debug: its platform says the cycle's failures of this kind in one line (a wave of them is one line, not thousands).</summary>
    public bool Quiet { get; init; }

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
