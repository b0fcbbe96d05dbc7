namespace TokenRefresh;

/// <summary>An account found due this cycle. <paramref name="Problem"/> set means: skip it with a warning.</summary>
public sealed record DueAccount(string Id, string? Label = null, string? Problem = null)
{
    /// <summary>Forced by an operator (`tokenrefresh refresh`): due or not, backing off or not; the lock still holds.</summary>
    internal bool Forced { get; init; }

    /// <summary>The token and state read with the page, when the platform needs no lock to use them (validation).</summary>
    internal Persistence.ClaimedToken? Prefetched { get; init; }

    /// <summary>How log lines name the account: its id, and its shop domain where it has one. Never a token.</summary>
    public override string ToString() => Label is null ? $"account {Id}" : $"store {Label} ({Id})";
}

/// <summary>One platform: which accounts are due, and how to refresh or validate one of them.</summary>
public interface IPlatformRefresher
{
    string Platform { get; }

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
    /// Refreshes or validates one account. <paramref name="deadline"/> is the end of the cycle's budget:
    /// work that must not be dropped (storing a rotated pair) is retried until then.
    /// <paramref name="claiming"/> is cancelled when the cycle stops claiming: it may end waits before the
    /// account is claimed; once a request is sent, the account finishes regardless.
    /// </summary>
    Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken claiming);
}
