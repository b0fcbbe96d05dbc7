using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Status;

/// <summary>
/// What `tokenrefresh status` counts for one platform, as the platform describes it: its table and state rows, the
/// token its state is about, which rows are its accounts and which are due, and whatever else it shows (a quota, a
/// cut-off). Its two statements are built here, whole.
/// </summary>
/// <param name="TokenColumn">The token the account's state is about (SQL on <c>a</c>).</param>
/// <param name="Active">Which rows are its accounts (SQL on <c>a</c>).</param>
/// <param name="Due">Which accounts are due now (SQL on <c>a</c> and its state <c>s</c>; parameters @Now, @DueBefore, @IntervalSeconds).</param>
/// <param name="Callable">Which accounts may be called at all; null: every one.</param>
/// <param name="ShopColumn">The shop domain, where the accounts have one.</param>
/// <param name="RefreshTokenEnds">When the refresh token ends, for platforms that refresh; null for validation.</param>
/// <param name="PausedReason">The last error of accounts held back from deactivation, where there are such.</param>
internal sealed record StatusSource(
    PlatformInfo Platform, TableShape Table, string TokenColumn, string Active, string Due, string? Callable, string? ShopColumn,
    string? RefreshTokenEnds, string? PausedReason)
{
    /// <summary>The margin @DueBefore is now plus; zero for validation.</summary>
    public TimeSpan Margin { get; init; }

    /// <summary>@IntervalSeconds: SHOPIFY_VALIDATE_INTERVAL_MINUTES, for validation.</summary>
    public long IntervalSeconds { get; init; }

    /// <summary>What else the platform shows, added to its counts (Etsy's quota, Shopify's cut-off).</summary>
    public Func<NpgsqlConnection, PlatformStatus, CancellationToken, Task<PlatformStatus>>? Complete { get; init; }

    private string NotCalled => Callable is null ? "false" : $"NOT COALESCE({Callable}, false)";

    // State rows count only while they are about the token the row holds now.
    private string Current => $"s.token_hash = encode(sha256(convert_to({TokenColumn}, 'UTF8')), 'hex')";

    private string Reauth => $"COALESCE({Current} AND s.needs_reauth, false)";

    private string BackingOff => $"COALESCE({Current} AND NOT s.needs_reauth AND s.next_attempt_at > @Now, false)";

    private string Ending => RefreshTokenEnds is { } ends ? $"COALESCE({ends} <= @WarnBefore AND NOT {Reauth}, false)" : "false";

    private string From => $"FROM {Table.Name} a LEFT JOIN token_refresh_state s ON s.platform = '{Platform.Id}' AND s.account_id = {Table.Id("a")}";

    /// <summary>The counts: due, fine lately, backing off, needing re-authorisation, refresh token ending, never called, held back.</summary>
    public string Counts => $"""
        SELECT
            count(*) FILTER (WHERE {Due} AND NOT {NotCalled} AND {AccountState.EligibleSql(TokenColumn)}),
            count(*) FILTER (WHERE s.last_success_at >= @RecentSince),
            count(*) FILTER (WHERE {BackingOff}),
            count(*) FILTER (WHERE {Reauth}),
            count(*) FILTER (WHERE {Ending}),
            count(*) FILTER (WHERE {NotCalled}),
            count(*) FILTER (WHERE {BackingOff} AND {(PausedReason is { } paused ? $"s.last_error = '{paused}'" : "false")})
        {From}
        WHERE {Active}
        """;

    /// <summary>The accounts that need attention, the most pressing first (at most 500).</summary>
    public string Accounts => $"""
        SELECT {Table.Id("a")} AS Id, {ShopColumn ?? "NULL"} AS Shop,
               CASE WHEN {NotCalled} THEN 'not_called' WHEN {Reauth} THEN 'needs_reauth' WHEN {BackingOff} THEN 'backing_off'
                    ELSE 'refresh_token_expiring' END AS "Group",
               COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError,
               s.last_error_at AS LastErrorAt, s.next_attempt_at AS NextAttemptAt,
               {RefreshTokenEnds ?? "NULL::timestamptz"} AS RefreshTokenExpiresAt
        {From}
        WHERE {Active} AND ({NotCalled} OR {Reauth} OR {BackingOff} OR {Ending})
        ORDER BY 3 DESC, s.last_error_at DESC
        LIMIT 500
        """;
}
