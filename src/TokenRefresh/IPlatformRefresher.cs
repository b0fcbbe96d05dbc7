namespace TokenRefresh;

/// <summary>An account found due this cycle. <paramref name="Problem"/> set means: skip it with a warning.</summary>
public sealed record DueAccount(string Id, string? Label = null, string? Problem = null)
{
    /// <summary>Forced by an operator (`tokenrefresh refresh`): due or not, backing off or not; the claim still holds.</summary>
    internal bool Forced { get; init; }

    /// <summary>The moment of the rate-limit permit for this account's call (a <see cref="TimeProvider"/> timestamp); null: none was needed.</summary>
    internal long? PermittedAt { get; init; }

    /// <summary>The token and state the claim read (for validation, which needs no claim: the page).</summary>
    internal Persistence.ClaimedToken? Claimed { get; init; }

    /// <summary>The same account: its id, label and problem (what a claim read, and when, rides along).</summary>
    public bool Equals(DueAccount? other) => other is not null && Id == other.Id && Label == other.Label && Problem == other.Problem;

    public override int GetHashCode() => HashCode.Combine(Id, Label, Problem);

    /// <summary>How log lines name the account: its id, and its shop domain where it has one. Never a token.</summary>
    public override string ToString() => Label is null ? $"account {Id}" : $"store {Label} ({Id})";
}

/// <summary>Claiming an account: the <paramref name="Account"/> to process, carrying what the claim read; or, when it is not processed now, its <paramref name="Result"/>.</summary>
public sealed record Claim(DueAccount? Account, AccountResult? Result = null);

/// <summary>One platform: which accounts are due, and how to refresh or validate one of them.</summary>
public interface IPlatformRefresher
{
    string Platform { get; }

    /// <summary>Its name in token_refresh_state, the view and the re-authorisation signals: etsy, shopify, shopify_refresh.</summary>
    string StateKey => Platform.ToLowerInvariant();

    /// <summary>Whose concurrency limit applies: "Etsy" (ETSY_MAX_CONCURRENCY) or "Shopify" (SHOPIFY_MAX_CONCURRENCY).</summary>
    string Group { get; }

    /// <summary>What success is called on this platform: Refreshed or Validated.</summary>
    Outcome SuccessOutcome { get; }

    /// <summary>False when this platform cannot run on this database (e.g. columns missing); it is then left out of the summary.</summary>
    Task<bool> IsEnabledAsync(CancellationToken cancellationToken) => Task.FromResult(true);

    /// <summary>How many accounts are due now (the cycle's "found" line). Throws when the database cannot be reached.</summary>
    Task<int> CountDueAsync(CancellationToken cancellationToken);

    /// <summary>The accounts due now, most urgent first, read a page at a time.</summary>
    IAsyncEnumerable<DueAccount> FindDueAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The account an operator names (<paramref name="kind"/> "etsy-user" with an id, or "shop" with a shop domain),
    /// when this platform handles it; null otherwise.
    /// </summary>
    Task<DueAccount?> FindAccountAsync(string kind, string key, CancellationToken cancellationToken);

    /// <summary>
    /// Waits until one more call of this platform may start: a rate-limit permit, shared by every replica, after any
    /// 429 pause. Once it may: no reason, and how long ago the permit's moment was (its call must leave within
    /// <see cref="RefreshCycle.PermitGrace"/> of it); else why not, and the platform's other accounts are left for a
    /// later cycle. Comes before the claim, so that no account is claimed while it waits.
    /// </summary>
    Task<(string? NotNow, TimeSpan Late)> WaitForPermitAsync(DateTimeOffset deadline, CancellationToken claiming);

    /// <summary>
    /// A permit if one can be had now, without waiting or asking the database: how long ago its moment was; null when
    /// there is none now. Zero for a platform without a rate limit.
    /// </summary>
    TimeSpan? TryTakePermit();

    /// <summary>
    /// Claims accounts for this process, in the database and before anything is sent, so that no other process or
    /// replica sends their tokens meanwhile; no transaction stays open. Returns, for each account in order, the claimed
    /// account, or a result (skipped) when it is no longer due or another process has it.
    /// </summary>
    Task<IReadOnlyList<Claim>> ClaimAsync(IReadOnlyList<DueAccount> accounts, DateTimeOffset deadline, CancellationToken claiming);

    /// <summary>
    /// Refreshes or validates one claimed account. <paramref name="deadline"/> is the end of the cycle's budget:
    /// work that must not be dropped (storing a rotated pair) is retried until then. Once a request is sent, the
    /// account finishes whatever <paramref name="claiming"/> says.
    /// </summary>
    Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken claiming);

    /// <summary>
    /// After the platform's last account of the cycle: stores what the cycle learned (the daily quota, the validations
    /// waiting) and returns the results it decided only now (Shopify's rejected stores). Never throws.
    /// </summary>
    Task<IReadOnlyList<(DueAccount Account, AccountResult Result)>> FinishCycleAsync();
}
