namespace TokenRefresh.Persistence;

/// <summary>An account's token and its state columns (<see cref="AccountState.Columns"/>), as a claim or a page read them.</summary>
internal sealed class ClaimedToken
{
    public string Id { get; init; } = "";
    public string? ShopDomain { get; init; }

    /// <summary>How log lines name the account besides its id (a refresh claim reads it: the shop domain, where there is one).</summary>
    public string? Label { get; init; }

    /// <summary>Whether the claim that read this row took it: a claim returns every row it looked at.</summary>
    public bool Claimed { get; init; }
    public string Token { get; init; } = "";
    public int ConsecutiveFailures { get; init; }
    public string? LastError { get; init; }
    public DateTimeOffset? LastErrorAt { get; init; }
    public DateTimeOffset? NextAttemptAt { get; init; }
    public bool NeedsReauth { get; init; }
    public string? TokenHash { get; init; }
    public DateTimeOffset? UnknownOutcomeAt { get; init; }
    public DateTimeOffset? LastSuccessAt { get; init; }

    /// <summary>When the account's access token ends (token_expires_at), where the claim reads it.</summary>
    public DateTimeOffset? AccessExpiresAt { get; init; }

    /// <summary>The lease the claim found, uncleared: its process stopped mid-call (it had run out, or it would not have been claimed).</summary>
    public string? LeaseTokenHash { get; init; }

    /// <summary>When that lease was taken (the state row's updated_at: nothing else writes the row while a lease is on it).</summary>
    public DateTimeOffset? LeasedAt { get; init; }

    /// <summary>Who holds the lease this claim took: the guard of the writes that end it.</summary>
    public string? LeaseHolder { get; init; }

    public AccountState State => new(
        ConsecutiveFailures, LastError, LastErrorAt, NextAttemptAt, NeedsReauth, TokenHash, UnknownOutcomeAt, LastSuccessAt);

    // Never print the token.
    public override string ToString() => nameof(ClaimedToken);
}
