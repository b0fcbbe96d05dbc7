using TokenRefresh.Persistence;

namespace TokenRefresh.OAuth;

/// <summary>
/// Every statement of the refresh mechanism for one platform's table, as it is now (its key, its column types), each
/// built once into one string: what runs is what a reviewer reads here, and what the snapshot test prints.
/// </summary>
internal sealed class OAuthStatements
{
    public OAuthStatements(IRefreshTokenPlatform platform, TableShape shape)
    {
        var t = platform.Table;
        var key = shape.Key("a");
        var id = shape.Id("a");
        var state = platform.Info.Id;
        var label = t.LabelColumn is { } l ? $"a.{l}" : "NULL";
        var active = t.ActiveColumn is { } a ? $"a.{a} AND " : "";
        var callable = platform.CallableSql("a") is { } c ? $"\n  AND {c.Nested(2)}" : "";
        var from = $"""
            FROM {t.Name} a
            LEFT JOIN token_refresh_state s ON s.platform = '{state}' AND s.account_id = {id}
            """;
        // An account that may be called now: refreshed, not flagged, not backing off (for this token), and callable.
        var callableNow = $"""
            {active}a.refresh_token IS NOT NULL
              AND {AccountState.EligibleSql("a.refresh_token").Nested(6)}{callable}
            """;
        var dueBefore = shape.At("token_expires_at", "@DueBefore");
        var life = platform.RefreshToken;
        RefreshTokenEnds = RefreshTokenEndsSql(platform, shape);
        // Compared on the column itself where there is one, so that an index on it serves.
        string EndsBefore(string parameter) => life.EndColumn is { } column ? $"a.{column} <= {shape.At(column, parameter)}" : $"{RefreshTokenEnds} <= {parameter}";
        var currentToken = "s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')";

        CountDue = $"""
            SELECT count(*)::int
            {from}
            WHERE {callableNow}
              AND (a.token_expires_at <= {dueBefore} OR a.token_expires_at IS NULL)
            """;

        // Soonest expiry first, then the rows without an expiry (skipped with a warning). Another process's lease makes
        // the account its own: it is not a candidate here.
        DuePage = $"""
            SELECT {id} AS Id, {label} AS Label, {shape.Time("a", "token_expires_at")} AS ExpiresAt
            {from}
            WHERE {callableNow}
              AND a.token_expires_at <= {dueBefore} AND {NotLeased}
              AND (@AfterId::text IS NULL OR (a.token_expires_at, {key}) > ({shape.At("token_expires_at", "@AfterExpiry")}, {shape.IdParam("@AfterId")}))
            ORDER BY a.token_expires_at, {key}
            LIMIT {Paging.PageSize}
            """;
        NoExpiryPage = $"""
            SELECT {id} AS Id, {label} AS Label, NULL::timestamptz AS ExpiresAt
            {from}
            WHERE {callableNow}
              AND a.token_expires_at IS NULL AND {shape.After("a", "@AfterId")}
            ORDER BY {key}
            LIMIT {Paging.PageSize}
            """;

        // Compared as text, an id that is not of the key's type simply matches nothing.
        FindAccount = $"""
            SELECT {id} AS Id, {label} AS Label
            FROM {t.Name} a
            WHERE {active}a.refresh_token IS NOT NULL AND {(t.LookupColumn is { } lookup ? $"a.{lookup}" : id)} = @Key
            """;

        Claim = ClaimSql(platform, shape, from, callableNow, forced: false);
        ForcedClaim = ClaimSql(platform, shape, from, callableNow, forced: true);
        Store = StoreSql(platform, shape);

        SaveState = AccountState.SaveSql(t.Name, shape);

        // Its own state rows and those of its refresh tokens' announced ends.
        Leftovers = new Leftovers(t.Name, shape, [state, $"{state}:ending"]);

        NeedsReauth = $"""
            SELECT count(*)
            FROM token_refresh_state s JOIN {t.Name} a ON {id} = s.account_id
            WHERE s.platform = '{state}' AND s.needs_reauth AND {active}{currentToken}
            """;

        RefreshTokensEnding = $"""
            SELECT {id} AS Id, {label} AS Label, {RefreshTokenEnds} AS ExpiresAt
            {from}
            WHERE {active}a.refresh_token IS NOT NULL AND {EndsBefore("@WarnBefore")}
              AND NOT (COALESCE(s.needs_reauth, false) AND {currentToken})
            ORDER BY 3
            LIMIT 1000
            """;

        QuotaUse = $"""
            SELECT (SELECT count(*) FROM {t.Name} a WHERE {active}a.refresh_token IS NOT NULL) AS Accounts,
                   r.quota_per_day AS PerDay, r.remaining_today AS Remaining
            FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = '{state}'
            """;

        // A refresh token with a fixed end is announced ahead under a row of its own ('<platform>:ending', which the view
        // and NOTIFY name by the platform), so that its refreshes and failures (the platform's own row) are untouched.
        AnnounceEnding = life is { FixedEnd: true, AnnouncedAhead: not null } ? $"""
            WITH ending AS (
                SELECT {id} AS id, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash
                {from.Nested(4)}
                WHERE {active}a.refresh_token IS NOT NULL AND {EndsBefore("@AnnounceBefore")}
                  AND NOT (COALESCE(s.needs_reauth, false) AND {currentToken})),
            announced AS (
                INSERT INTO token_refresh_state AS e (platform, account_id, needs_reauth, last_error, last_error_at, token_hash, updated_at)
                SELECT '{state}:ending', id, true, 'refresh_token_ending', @Now, hash, @Now FROM ending
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    last_error_at = EXCLUDED.last_error_at, token_hash = EXCLUDED.token_hash, updated_at = EXCLUDED.updated_at
                WHERE e.token_hash IS DISTINCT FROM EXCLUDED.token_hash
                RETURNING e.account_id),
            withdrawn AS (
                DELETE FROM token_refresh_state e
                WHERE e.platform = '{state}:ending' AND e.account_id NOT IN (SELECT id FROM ending))
            SELECT announced.account_id AS Id, {label} AS Label
            FROM announced JOIN {t.Name} a ON {id} = announced.account_id
            """ : null;
    }

    /// <summary>When an account's refresh token ends, as SQL on the row <c>a</c> joined to its state <c>s</c>.</summary>
    public string RefreshTokenEnds { get; }

    /// <summary>The due accounts, and those without an expiry (parameters @Now, @DueBefore).</summary>
    public string CountDue { get; }

    /// <summary>A page of due accounts, soonest expiry first, after @AfterExpiry and @AfterId.</summary>
    public string DuePage { get; }

    /// <summary>A page of accounts without an expiry, after @AfterId.</summary>
    public string NoExpiryPage { get; }

    /// <summary>The account an operator names (@Key).</summary>
    public string FindAccount { get; }

    /// <summary>Leases the @Count soonest-expiring of the candidates @Ids that may be claimed now, in one autocommit statement; see <see cref="ClaimSql"/>.</summary>
    public string Claim { get; }

    /// <summary>Leases the accounts an operator names (@Ids) for `refresh`: due or not, backing off or not, but never while a lease or the in-flight wait stands.</summary>
    public string ForcedClaim { get; }

    /// <summary>Stores a pair over the token that was sent, and the account's state with it.</summary>
    public string Store { get; }

    /// <summary>Accounts flagged for re-authorisation that still hold the refused token (the metric).</summary>
    public string NeedsReauth { get; }

    /// <summary>Writes an account's state after a failure, while the account is in the table (<see cref="AccountState.SaveSql"/>).</summary>
    public string SaveState { get; }

    /// <summary>The state of accounts deleted from the table, removed a batch a cycle.</summary>
    public Leftovers Leftovers { get; }

    /// <summary>Accounts whose refresh token ends before @WarnBefore (a warning each cycle).</summary>
    public string RefreshTokensEnding { get; }

    /// <summary>The accounts refreshed, and the daily quota the platform last gave.</summary>
    public string QuotaUse { get; }

    /// <summary>When an account's refresh token ends: its own column, or its life counted from the last success (the refresh that issued it).</summary>
    public static string RefreshTokenEndsSql(IRefreshTokenPlatform platform, TableShape shape) => platform.RefreshToken.EndColumn is { } end
        ? shape.Time("a", end)
        : $"(s.last_success_at + interval '{platform.RefreshToken.Lifetime.TotalDays} days')";

    /// <summary>For `status`: the accounts refreshed, and the daily quota the platform last gave, and when.</summary>
    public static string QuotaStatusSql(IRefreshTokenPlatform platform) => $"""
        SELECT (SELECT count(*) FROM {platform.Table.Name} a WHERE {(platform.Table.ActiveColumn is { } a ? $"a.{a} AND " : "")}a.refresh_token IS NOT NULL),
               r.quota_per_day, r.remaining_today, r.quota_seen_at
        FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = '{platform.Info.Id}'
        """;

    /// <summary>
    /// For `status`, past the quota: when the token after the soonest @Remaining expires (none: the quota left covers them all).
    /// </summary>
    public static string QuotaRunsOutSql(IRefreshTokenPlatform platform, TableShape shape) => $"""
        SELECT {shape.Time("a", "token_expires_at")}
        FROM {platform.Table.Name} a
        WHERE {(platform.Table.ActiveColumn is { } a ? $"a.{a} AND " : "")}a.refresh_token IS NOT NULL AND a.token_expires_at IS NOT NULL
        ORDER BY a.token_expires_at
        OFFSET @Remaining LIMIT 1
        """;

    /// <summary>For a fixed end: announces the accounts whose refresh token ends before @AnnounceBefore, withdraws the rest; returns those announced now.</summary>
    public string? AnnounceEnding { get; }

    // Another process's lease, until it runs out.
    private const string NotLeased = "(s.lease_until IS NULL OR s.lease_until <= @Now)";

    /// <summary>
    /// Claims accounts in one autocommit statement: each lease (this account's token may be in flight until lease_until) is
    /// committed before anything is sent. The statement reads each row and its state from one snapshot and takes the
    /// lease only if the state row has not changed since (its xmin), so what was read is what the claim was granted on.
    /// A cycle's claim takes the soonest of the candidates that are still due and free, skipping rows another claim is
    /// taking right now: replicas reading the same candidates take the next ones rather than the same. It returns every
    /// row it looked at, and whether it took it.
    /// </summary>
    private static string ClaimSql(IRefreshTokenPlatform platform, TableShape shape, string from, string callableNow, bool forced)
    {
        var t = platform.Table;
        var active = t.ActiveColumn is { } a ? $"a.{a} AND " : "";
        var label = t.LabelColumn is { } l ? $"a.{l}" : "NULL";
        var which = forced
            ? $"{active}a.refresh_token IS NOT NULL"
            : $"""
                {callableNow.Nested(4)}
                  AND a.token_expires_at <= {shape.At("token_expires_at", "@DueBefore")} AND {NotLeased}
                ORDER BY a.token_expires_at, {shape.Key("a")}
                LIMIT @Count
            """.Trim();
        return $"""
            WITH account AS (
                SELECT {shape.Id("a")} AS Id, {label} AS Label, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
                       {shape.Time("a", "token_expires_at")} AS AccessExpiresAt, s.xmin AS version, @Holder AS LeaseHolder,
                       {AccountState.Columns.Nested(11)},
                       {AccountState.LeaseColumns.Nested(11)},
                       a.token_expires_at AS expiry, {shape.Key("a")} AS key
                {from.Nested(4)}
                WHERE {shape.Key("a")} = ANY({shape.IdsParam("@Ids")}) AND {which}
                -- For this statement only: the main application, in the middle of writing the row, is left alone.
                FOR UPDATE OF a SKIP LOCKED),
            claimed AS (
                INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
                SELECT '{platform.Info.Id}', Id, @LeaseUntil, hash, @Holder, @Now FROM account
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
                    lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
                WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
                   OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id)
                       AND {AccountState.ClaimableSql(forced).Nested(11)})
                RETURNING s.account_id)
            SELECT a.*, a.Id IN (SELECT account_id FROM claimed) AS Claimed FROM account a ORDER BY a.expiry, a.key
            """;
    }

    // A compare-and-set on the token that was sent (or, for a rotating token, on the pair itself, when an earlier
    // attempt's commit was acknowledged too late); the state is reset with it, lease included. Superseded: only the
    // lease ends. A refresh token that does not rotate is kept as it is, and so is the end the main application stored.
    private static string StoreSql(IRefreshTokenPlatform platform, TableShape shape)
    {
        var life = platform.RefreshToken;
        var pair = life.Rotates ? ", refresh_token = @RefreshToken" : "";
        var end = life.Rotates && life.EndColumn is { } column ? $", {column} = {shape.At(column, "@RefreshExpiresAt")}" : "";
        var sent = life.Rotates ? "a.refresh_token IN (@Sent, @RefreshToken)" : "a.refresh_token = @Sent";
        var state = platform.Info.Id;
        return $"""
            WITH stored AS (
                UPDATE {platform.Table.Name} a
                SET access_token = @AccessToken{pair}, token_expires_at = {shape.At("token_expires_at", "@ExpiresAt")}{end},
                    updated_at = {shape.At("updated_at", "@Now")}
                WHERE {shape.Key("a")} = {shape.IdParam("@Id")} AND {sent}
                RETURNING {shape.Id("a")} AS id),
            state AS (
                INSERT INTO token_refresh_state AS s (platform, account_id, last_success_at, updated_at)
                SELECT '{state}', id, @Now, @Now FROM stored
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
                    token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at,
                    lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL),
            released AS (
                UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
                WHERE s.platform = '{state}' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
            SELECT 1 FROM stored
            """;
    }
}
