using TokenRefresh.Platforms.Shopify;

namespace TokenRefresh.Status;

/// <summary>
/// One account that needs attention: <c>not_called</c> (a label its platform will not call), <c>needs_reauth</c>,
/// <c>backing_off</c>, or <c>refresh_token_expiring</c> (its refresh token ends within its platform's window).
/// </summary>
public sealed record AttentionAccount(
    string Id, string? Shop, string Group, int ConsecutiveFailures, string? LastError, DateTimeOffset? LastErrorAt,
    DateTimeOffset? NextAttemptAt, DateTimeOffset? RefreshTokenExpiresAt);

/// <summary>
/// Per platform: how many accounts are due, fine lately, backing off, need re-authorisation, have a refresh token about to expire,
/// or are never called (<see cref="NotCalled"/>: a label the platform will not call); and accounts held back from
/// deactivation (<see cref="DeactivationPaused"/>, among those backing off).
/// </summary>
public sealed record PlatformStatus(
    string Platform, long Due, long Recent, long BackingOff, long NeedsReauth, long RefreshTokenExpiring, long NotCalled, long DeactivationPaused,
    IReadOnlyList<AttentionAccount> Accounts)
{
    /// <summary>The platform's daily quota and what the refreshes take of it; null for platforms without one.</summary>
    public QuotaStatus? Quota { get; init; }

    /// <summary>A cut-off for the kind of token the platform holds, and the accounts still holding it; null where there is none.</summary>
    public CutoffStatus? NonExpiringCutoff { get; init; }

    /// <summary>An optional platform that cannot run on this database, and why (its table is missing).</summary>
    public string? NotRun { get; init; }

    public static PlatformStatus Absent(string platform, string why) => new(platform, 0, 0, 0, 0, 0, 0, 0, []) { NotRun = why };
}

/// <summary>
/// A daily quota per API key: <paramref name="PerDay"/> and <paramref name="Remaining"/> as the platform's last answer
/// gave them (null before any), and the requests a day that refreshing <paramref name="Accounts"/> accounts takes.
/// </summary>
public sealed record QuotaStatus(int? PerDay, int? Remaining, DateTimeOffset? SeenAt, long Accounts, double RefreshesPerDay, double? SharePercent, int WarnPercent)
{
    /// <summary>
    /// The accounts whose tokens expire for want of quota, when the refreshes need more than the quota a day: more than
    /// it can keep refreshed (0 when it is enough, or not seen yet).
    /// </summary>
    public long ExpiringForWantOfQuota { get; init; }

    /// <summary>When the first of them expires: the token after the soonest <see cref="Remaining"/> ones, which today's requests left refresh.</summary>
    public DateTimeOffset? ExpiringFrom { get; init; }
}
