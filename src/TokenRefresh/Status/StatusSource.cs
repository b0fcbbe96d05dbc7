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

    /// <summary>@IntervalSeconds: how often a validation platform validates each account at most.</summary>
    public long IntervalSeconds { get; init; }

    /// <summary>How far ahead a refresh token's end counts as ending (@WarnBefore is now plus this).</summary>
    public TimeSpan EndingWithin { get; init; } = TimeSpan.FromDays(7);

    /// <summary>What else the platform shows, added to its counts (a daily quota, a cut-off).</summary>
    public Func<NpgsqlConnection, PlatformStatus, CancellationToken, Task<PlatformStatus>>? Complete { get; init; }

    // Each account once, with what `status` asks of it as named columns: the counts and the list read them.
    private string Accounts_ => $"""
        SELECT {Table.Id("a")} AS id, {ShopColumn ?? "NULL"} AS shop, s.consecutive_failures, s.last_error, s.last_error_at, s.next_attempt_at,
               {RefreshTokenEnds ?? "NULL::timestamptz"} AS refresh_token_ends,
               {Due.Nested(7)} AS due,
               {(Callable is null ? "true" : $"COALESCE({Callable}, false)")} AS callable,
               {AccountState.EligibleSql(TokenColumn).Nested(7)} AS eligible,
               COALESCE(s.last_success_at >= @RecentSince, false) AS recent,
               (COALESCE(s.needs_reauth, false) AND COALESCE({Current}, false)) AS needs_reauth,
               (COALESCE(NOT s.needs_reauth AND s.next_attempt_at > @Now, false) AND COALESCE({Current}, false)) AS backing_off,
               {(RefreshTokenEnds is { } ends ? $"COALESCE({ends} <= @WarnBefore, false)" : "false")} AS ending,
               {(PausedReason is { } paused ? $"COALESCE(s.last_error = '{paused}', false)" : "false")} AS paused
        FROM {Table.Name} a LEFT JOIN token_refresh_state s ON s.platform = '{Platform.Id}' AND s.account_id = {Table.Id("a")}
        WHERE {Active}
        """;

    // State rows count only while they are about the token the row holds now; tested last, after a condition that is
    // false rather than null for every other account, so that only a flagged or backing-off account's token is hashed.
    private string Current => $"s.token_hash = encode(sha256(convert_to({TokenColumn}, 'UTF8')), 'hex')";

    /// <summary>The counts: due, fine lately, backing off, needing re-authorisation, refresh token ending, never called, held back.</summary>
    public string Counts => $"""
        SELECT count(*) FILTER (WHERE due AND callable AND eligible),
               count(*) FILTER (WHERE recent),
               count(*) FILTER (WHERE backing_off),
               count(*) FILTER (WHERE needs_reauth),
               count(*) FILTER (WHERE ending AND NOT needs_reauth),
               count(*) FILTER (WHERE NOT callable),
               count(*) FILTER (WHERE backing_off AND paused)
        FROM (
            {Accounts_.Nested(4)}
        ) accounts
        """;

    /// <summary>The accounts that need attention, the most pressing first (at most 500).</summary>
    public string Accounts => $"""
        SELECT id AS Id, shop AS Shop,
               CASE WHEN NOT callable THEN 'not_called' WHEN needs_reauth THEN 'needs_reauth' WHEN backing_off THEN 'backing_off'
                    ELSE 'refresh_token_expiring' END AS "Group",
               COALESCE(consecutive_failures, 0) AS ConsecutiveFailures, last_error AS LastError, last_error_at AS LastErrorAt,
               next_attempt_at AS NextAttemptAt, refresh_token_ends AS RefreshTokenExpiresAt
        FROM (
            {Accounts_.Nested(4)}
        ) accounts
        WHERE NOT callable OR needs_reauth OR backing_off OR (ending AND NOT needs_reauth)
        ORDER BY 3 DESC, last_error_at DESC
        LIMIT 500
        """;
}
