using System.Runtime.CompilerServices;
using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.OAuth;

/// <summary>
/// The refresh-token mechanism, the same for every OAuth2 platform: find the accounts whose access token
/// expires within the margin, claim each with a row lock, call the platform, and store the rotated pair,
/// both expiries and the cleared failure state in one statement; on failure record the backoff or the
/// re-authorisation flag before the lock is released.
/// </summary>
internal sealed partial class OAuthRefresher(
    IRefreshTokenPlatform platform,
    NpgsqlDataSource db,
    PairWriter writer,
    TimeProvider time,
    IOptions<TokenRefreshOptions> options,
    TokenRefreshMetrics metrics,
    PlatformHealthRegistry health,
    ILogger<OAuthRefresher> logger) : IPlatformRefresher
{
    /// <summary>Refresh tokens that expire within this produce a warning every cycle and show in status.</summary>
    public static readonly TimeSpan RefreshTokenWarning = TimeSpan.FromDays(7);

    private readonly TokenTable _t = platform.Table;

    /// <summary>The table as the catalog described it at the start of this cycle (refreshers are made per cycle).</summary>
    private TableShape? _shape;

    private int _credentialsRefused;

    public string Platform => platform.Platform;

    public string StateKey => platform.StateKey;

    public string Group => platform.Group;

    public Outcome SuccessOutcome => Outcome.Refreshed;

    private TableShape T => _shape ?? throw new InvalidOperationException("The table's shape is read first (IsEnabledAsync).");

    private string Key => T.Key("a");

    private string Id => T.Id("a");

    private string Label => _t.LabelColumn is { } label ? $"a.{label}" : "NULL";

    private string Active => _t.ActiveColumn is { } active ? $"a.{active}" : "true";

    private string Join => $"""
        FROM {_t.Name} a
        LEFT JOIN token_refresh_state s ON s.platform = '{platform.StateKey}' AND s.account_id = {Id}
        """;

    // When the refresh token ends: its own column, or (Etsy says nothing of its life) 90 days after the refresh that issued it.
    private string RefreshTokenExpiry => _t.RefreshExpiryColumn is { } column ? T.Time("a", column) : "(s.last_success_at + interval '90 days')";

    private string RefreshTokenExpiryAt(string parameter) =>
        _t.RefreshExpiryColumn is { } column ? $"a.{column} <= {T.At(column, parameter)}" : $"{RefreshTokenExpiry} <= {parameter}";

    public async Task<bool> IsEnabledAsync(CancellationToken cancellationToken) => (_shape = await platform.ShapeAsync(cancellationToken)) is not null;

    private string DueFilter => $"""
        {Active} AND a.refresh_token IS NOT NULL AND {AccountState.EligibleSql("a.refresh_token")}{(platform.CallableSql("a") is { } callable ? $" AND {callable}" : "")}
        """;

    public Task<int> CountDueAsync(CancellationToken cancellationToken) =>
        DatabaseRetry.ReadAsync(time, CountDueOnceAsync, cancellationToken).AsTask();

    private async ValueTask<int> CountDueOnceAsync(CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT count(*)::int
            {Join}
            WHERE {DueFilter} AND (a.token_expires_at <= {T.At("token_expires_at", "@DueBefore")} OR a.token_expires_at IS NULL)
            """;
        var now = time.GetUtcNow();
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        await WarnAboutExpiringRefreshTokensAsync(connection, now, cancellationToken);
        await CheckDailyQuotaAsync(connection, now, cancellationToken);
        // The claim once for no account: a new process's first claim is then as quick as the others, and a rate-limit
        // permit does not grow stale while it runs.
        await connection.ReadRowOrDefaultAsync<ClaimedToken>(
            new CommandDefinition(ClaimSql(false), ClaimParameters([], now, "warm-up", now), cancellationToken: cancellationToken));
        var reauthSql = $"""
            SELECT count(*)
            FROM token_refresh_state s JOIN {_t.Name} a ON {Id} = s.account_id
            WHERE s.platform = '{platform.StateKey}' AND s.needs_reauth AND {Active}
              AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex')
            """;
        metrics.NeedsReauth(platform.Platform, await connection.ExecuteScalarAsync<long>(new CommandDefinition(reauthSql, cancellationToken: cancellationToken)));
        return await connection.ExecuteScalarAsync<int>(
            new CommandDefinition(sql, new { DueBefore = now + platform.Margin, Now = now }, cancellationToken: cancellationToken));
    }

    public async IAsyncEnumerable<DueAccount> FindDueAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Soonest expiry first, then the rows without an expiry (skipped with a warning).
        var dueSql = $"""
            SELECT {Id} AS Id, {Label} AS Label, {T.Time("a", "token_expires_at")} AS ExpiresAt
            {Join}
            WHERE {DueFilter} AND a.token_expires_at <= {T.At("token_expires_at", "@DueBefore")}
              AND (@AfterId::text IS NULL OR (a.token_expires_at, {Key}) > ({T.At("token_expires_at", "@AfterExpiry")}, {T.IdParam("@AfterId")}))
            ORDER BY a.token_expires_at, {Key}
            LIMIT {Paging.PageSize}
            """;
        var noExpirySql = $"""
            SELECT {Id} AS Id, {Label} AS Label, NULL::timestamptz AS ExpiresAt
            {Join}
            WHERE {DueFilter} AND a.token_expires_at IS NULL AND {T.After("a", "@AfterId")}
            ORDER BY {Key}
            LIMIT {Paging.PageSize}
            """;
        var now = time.GetUtcNow();
        var first = new DuePage(null, null, null);
        await foreach (var row in Paging.ReadAsync<DuePage>(last => PageAsync(dueSql, last ?? first, now)).WithCancellation(cancellationToken))
        {
            yield return new DueAccount(row.Id!, row.Label, platform.Problem(row.Label));
        }

        await foreach (var row in Paging.ReadAsync<DuePage>(last => PageAsync(noExpirySql, last ?? first, now)).WithCancellation(cancellationToken))
        {
            yield return new DueAccount(row.Id!, row.Label, "token_expires_at is NULL");
        }

        Task<IReadOnlyList<DuePage>> PageAsync(string sql, DuePage after, DateTimeOffset at) => DatabaseRetry.ReadAsync<IReadOnlyList<DuePage>>(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            var rows = await connection.ReadRowsAsync<DuePage>(new CommandDefinition(
                sql, new { DueBefore = at + platform.Margin, Now = at, AfterExpiry = after.ExpiresAt, AfterId = after.Id }, cancellationToken: ct));
            return rows.AsList();
        }, cancellationToken).AsTask();
    }

    private sealed record DuePage(string? Id, string? Label, DateTimeOffset? ExpiresAt);

    public async Task<DueAccount?> FindAccountAsync(string kind, string key, CancellationToken cancellationToken)
    {
        if (kind != _t.KeyKind || !await IsEnabledAsync(cancellationToken))
        {
            return null;
        }

        // Compared as text, an id that is not of the key's type simply matches nothing; a uuid in any case matches.
        var lookup = _t.LookupColumn is { } column ? $"a.{column}" : Id;
        key = _t.LookupColumn is null && Guid.TryParse(key, out var uuid) ? uuid.ToString() : key;
        var sql = $"""
            SELECT {Id} AS Id, {Label} AS Label
            FROM {_t.Name} a
            WHERE {Active} AND a.refresh_token IS NOT NULL AND {lookup} = @Key
            """;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.ReadRowsAsync<(string Id, string? Label)>(new CommandDefinition(sql, new { Key = key }, cancellationToken: cancellationToken))).ToList();
        return rows switch
        {
            [] => null,
            [var r] => new DueAccount(r.Id, r.Label, platform.Problem(r.Label)) { Forced = true },
            // The main application's table does not make shop_domain unique: name no row rather than a random one.
            [var r, ..] => new DueAccount(r.Id, r.Label, $"{rows.Count} rows of {_t.Name} match {key}") { Forced = true },
        };
    }

    public Task<(string? NotNow, TimeSpan Late)> WaitForPermitAsync(DateTimeOffset deadline, CancellationToken claiming) =>
        platform.RateLimit is { } limit ? limit.WaitAsync(deadline, claiming) : Task.FromResult<(string?, TimeSpan)>((null, default));

    public TimeSpan? TryTakePermit() => platform.RateLimit is { } limit ? limit.TryTake() : TimeSpan.Zero;

    /// <summary>
    /// Claims accounts in one autocommit statement: each lease (this account's token may be in flight until lease_until) is
    /// committed before anything is sent. The statement reads each row and its state from one snapshot and takes the
    /// lease only if the state row has not changed since (its xmin), so what was read is what the claim was granted on.
    /// </summary>
    public async Task<IReadOnlyList<Claim>> ClaimAsync(IReadOnlyList<DueAccount> accounts, DateTimeOffset deadline, CancellationToken claiming)
    {
        var forced = accounts.Any(a => a.Forced);
        var sql = ClaimSql(forced);
        var now = time.GetUtcNow();
        var holder = AccountState.NewLeaseHolder();
        var ids = accounts.Select(a => a.Id).ToArray();
        // Not cancelled: a claim that the server committed is always known to this process, which then ends it.
        var rows = await DatabaseRetry.ReadAsync(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            var found = await connection.ReadRowsAsync<ClaimedToken>(
                new CommandDefinition(sql, ClaimParameters(ids, now, holder, deadline - options.Value.CycleBudget), cancellationToken: ct));
            return found.ToDictionary(r => r.Id, StringComparer.Ordinal);
        }, CancellationToken.None);
        return accounts.Select(a => rows.TryGetValue(a.Id, out var row)
            ? new Claim(a with { Claimed = row })
            : new Claim(null, AccountResult.Skip("not claimed: no longer due, or another process has it"))).ToList();
    }

    // Nothing is sent yet, so a shutdown (or the end of claiming) ends this wait, which may last a whole 429 pause.
    private static async Task<string?> NewPermitAsync(SharedRateLimit rate, DateTimeOffset deadline, CancellationToken claiming)
    {
        try
        {
            return (await rate.WaitAsync(deadline, claiming)).NotNow;
        }
        catch (OperationCanceledException) when (claiming.IsCancellationRequested)
        {
            return "stopped before it was sent";
        }
    }

    private object ClaimParameters(string[] ids, DateTimeOffset now, string holder, DateTimeOffset cycleStart) => new
    {
        Ids = ids, DueBefore = now + platform.Margin, Now = now, LeaseUntil = now + options.Value.LeaseLength, Holder = holder,
        UnknownOutcomeWait = options.Value.UnknownOutcomeWait.TotalSeconds, CycleStart = cycleStart,
    };

    // Built once per cycle and kind, with the table's shape.
    private string ClaimSql(bool forced) => forced ? _forcedClaimSql ??= BuildClaimSql(true) : _claimSql ??= BuildClaimSql(false);

    private string? _claimSql;
    private string? _forcedClaimSql;

    private string BuildClaimSql(bool forced)
    {
        // Due-ness is checked again here: another replica may have refreshed it since the page was read.
        var due = forced ? "" : $"AND a.token_expires_at <= {T.At("token_expires_at", "@DueBefore")}";
        return $"""
            WITH account AS (
                SELECT {Id} AS Id, a.refresh_token AS Token, encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex') AS hash,
                       {T.Time("a", "token_expires_at")} AS AccessExpiresAt,
                       s.xmin AS version, @Holder AS LeaseHolder, {AccountState.Columns}, {AccountState.LeaseColumns}
                {Join}
                WHERE {Key} = ANY({T.IdsParam("@Ids")}) AND {Active} AND a.refresh_token IS NOT NULL {due}
                -- For this statement only: the main application, in the middle of writing the row, is left alone.
                FOR UPDATE OF a SKIP LOCKED),
            claimed AS (
                INSERT INTO token_refresh_state AS s (platform, account_id, lease_until, lease_token_hash, lease_holder, updated_at)
                SELECT '{platform.StateKey}', Id, @LeaseUntil, hash, @Holder, @Now FROM account
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    lease_until = EXCLUDED.lease_until, lease_token_hash = EXCLUDED.lease_token_hash,
                    lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
                WHERE s.lease_holder = @Holder -- a retry after an attempt whose commit was not acknowledged
                   OR (s.xmin = (SELECT x.version FROM account x WHERE x.Id = s.account_id) AND {AccountState.ClaimableSql(forced)})
                RETURNING s.account_id)
            SELECT a.* FROM account a WHERE a.Id IN (SELECT account_id FROM claimed)
            """;
    }

    public async Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken claiming)
    {
        var claim = account.Claimed ?? throw new InvalidOperationException("The account is claimed first (ClaimAsync).");
        var sent = claim.Token;
        var hash = AccountState.Hash(sent);
        var state = claim.State;
        if (claim.LeaseTokenHash == hash && claim.LeasedAt is { } leasedAt)
        {
            // A process claimed this token before, and stopped without an outcome: its request may have rotated it.
            Log.LostLease(logger, platform.Platform, account, leasedAt);
            state = state.AfterLostLease(hash, leasedAt);
        }

        // Not cancelled by shutdown: a request that was sent is answered and its pair stored. (Should anything throw
        // here, the lease runs out uncleared, and the next claim treats the attempt as unknown.)
        // A permit is for its moment: if this call could not leave within the grace (a busy machine), it takes a new
        // one rather than go out beside the next call's, and waits for it with its lease.
        if (platform.RateLimit is { } rate && account.PermittedAt is { } permittedAt && time.GetElapsedTime(permittedAt) > RefreshCycle.PermitGrace
            && await NewPermitAsync(rate, deadline, claiming) is { } notNow)
        {
            await ReleaseAsync(account, claim);
            return AccountResult.Skip(notNow);
        }

        Log.Sending(logger, platform.Platform, account, time.GetUtcNow());
        var result = await platform.RefreshAsync(account.Label, sent, CancellationToken.None);
        var platformDown = health.For(platform.Group).Record(result.Status, result.Reason);

        if (result.Status == CallStatus.Ok)
        {
            return await StoreAsync(account, claim, sent, result.Value!, deadline);
        }

        if (result.Error is { } error)
        {
            Log.UnexpectedAfterSend(logger, error, platform.Platform, account);
        }

        if (result.CredentialsRefused)
        {
            // The app's credentials, not this account: nothing is recorded against it, and no more calls of this
            // platform start this cycle; said once.
            await ReleaseAsync(account, claim);
            if (Interlocked.Exchange(ref _credentialsRefused, 1) == 0)
            {
                Log.CredentialsRefused(logger, platform.Platform, result.Reason!, platform.CredentialSettings);
            }

            return AccountResult.StopPlatform($"refused the app's credentials ({result.Reason}): check {platform.CredentialSettings}");
        }

        if (result.Reason == "rate_limited" && result.RetryAfter is { } retryAfter && platform.RateLimit is { } limit)
        {
            await PauseAsync(limit, retryAfter);
        }

        var (next, failure) = state.Failed(
            result.Status, result.Reason!, result.OutcomeUnknown, result.RetryAfter, hash, time.GetUtcNow(), options.Value.UnknownOutcomeWait, platformDown,
            claim.AccessExpiresAt);
        try
        {
            // The lease ends with the failure recorded, so no other process calls the platform before the backoff is visible.
            await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
            await next.SaveAsync(connection, platform.StateKey, account.Id, time.GetUtcNow(), CancellationToken.None, claim.LeaseHolder);
        }
        catch (NpgsqlException e)
        {
            Log.StateNotSaved(logger, e, platform.Platform, account);
            // Not flagged in the database, so not announced either: the next attempt decides again.
            return failure with { NeedsUser = false };
        }

        return failure;
    }

    public async Task<IReadOnlyList<(DueAccount Account, AccountResult Result)>> FinishCycleAsync()
    {
        if (platform.RateLimit is not { } limit)
        {
            return [];
        }

        try
        {
            await limit.StoreQuotaAsync();
        }
        catch (NpgsqlException e)
        {
            // Only the figure in status waits: the next cycle's first permit stores it.
            Log.QuotaNotStored(logger, e, platform.Platform);
        }

        return [];
    }

    private async Task PauseAsync(SharedRateLimit limit, TimeSpan retryAfter)
    {
        try
        {
            await limit.PauseAsync(retryAfter);
        }
        catch (NpgsqlException e)
        {
            // This process still pauses; the other replicas learn of it from their own 429s.
            Log.PauseNotShared(logger, e, platform.Platform);
        }
    }

    private async Task ReleaseAsync(DueAccount account, ClaimedToken claim)
    {
        try
        {
            await AccountState.ReleaseAsync(db, platform.StateKey, account.Id, claim.LeaseHolder!);
        }
        catch (NpgsqlException e)
        {
            Log.StateNotSaved(logger, e, platform.Platform, account);
        }
    }

    private async Task<AccountResult> StoreAsync(DueAccount account, ClaimedToken claim, string sent, TokenPair pair, DateTimeOffset deadline)
    {
        if (pair.LifetimeAssumed)
        {
            Log.LifetimeAssumed(logger, platform.Platform, account, platform.AssumedLifetime.TotalMinutes);
        }

        var sql = _storeSql ??= BuildStoreSql();
        var now = time.GetUtcNow();
        var parameters = new
        {
            account.Id, pair.AccessToken, pair.RefreshToken, Sent = sent, ExpiresAt = now + pair.ExpiresIn,
            RefreshExpiresAt = now + (pair.RefreshExpiresIn ?? TimeSpan.FromDays(90)), Now = now, Holder = claim.LeaseHolder,
        };
        return await writer.WriteAsync(sql, parameters, deadline, platform.Platform, account) switch
        {
            WriteResult.Stored => AccountResult.Success(Outcome.Refreshed),
            WriteResult.Superseded => AccountResult.Skip("superseded: a newer token was stored meanwhile"),
            _ => AccountResult.PermanentFailure("received_but_not_stored"),
        };
    }

    /// <summary>How many refreshes an account needs a day: one each time its token comes within the margin of its end.</summary>
    public static double RefreshesPerDay(TimeSpan lifetime, TimeSpan margin)
    {
        var period = lifetime - margin;
        return TimeSpan.FromDays(1) / (period > TimeSpan.FromMinutes(3) ? period : TimeSpan.FromMinutes(3));
    }

    // A platform with a daily quota per API key (Etsy): what the refreshes alone take of it at the current account count;
    // in the metrics every cycle, and a warning, at most hourly for all replicas, past ETSY_QUOTA_WARN_PERCENT.
    private async Task CheckDailyQuotaAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (platform.RateLimit is not { } limit)
        {
            return;
        }

        var sql = $"""
            SELECT (SELECT count(*) FROM {_t.Name} a WHERE {Active} AND a.refresh_token IS NOT NULL) AS Accounts,
                   r.quota_per_day AS PerDay, r.remaining_today AS Remaining
            FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = @Platform
            """;
        var (accounts, perDay, remaining) = await connection.ReadRowAsync<(long, int?, int?)>(
            new CommandDefinition(sql, new { limit.Platform }, cancellationToken: cancellationToken));
        var refreshes = accounts * RefreshesPerDay(platform.TokenLifetime, platform.Margin);
        metrics.DailyQuota(platform.Platform, perDay, remaining, refreshes);
        var percent = options.Value.EtsyQuotaWarnPercent;
        if (perDay is not > 0 || refreshes <= perDay.Value * percent / 100.0)
        {
            return;
        }

        const string claimWarning = """
            UPDATE token_refresh_rate SET quota_warned_at = @Now
            WHERE platform = @Platform AND (quota_warned_at IS NULL OR quota_warned_at <= @Now - interval '1 hour')
            RETURNING true
            """;
        if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(claimWarning, new { limit.Platform, Now = now }, cancellationToken: cancellationToken)))
        {
            Log.DailyQuota(logger, platform.Platform, accounts, Math.Round(refreshes), Math.Round(100 * refreshes / perDay.Value), perDay.Value, percent);
        }
    }

    private string? _storeSql;

    // A compare-and-set on the token that was sent (or on the pair itself, when an earlier attempt's commit was
    // acknowledged too late); the state is reset with it, lease included. Superseded: only the lease ends.
    private string BuildStoreSql()
    {
        var refreshExpiry = _t.RefreshExpiryColumn is { } column ? $", {column} = {T.At(column, "@RefreshExpiresAt")}" : "";
        return $"""
            WITH stored AS (
                UPDATE {_t.Name} a
                SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = {T.At("token_expires_at", "@ExpiresAt")}{refreshExpiry},
                    updated_at = {T.At("updated_at", "@Now")}
                WHERE {Key} = {T.IdParam("@Id")} AND a.refresh_token IN (@Sent, @RefreshToken)
                RETURNING {Id} AS id),
            state AS (
                INSERT INTO token_refresh_state AS s (platform, account_id, last_success_at, updated_at)
                SELECT '{platform.StateKey}', id, @Now, @Now FROM stored
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
                    token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at,
                    lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL),
            released AS (
                UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
                WHERE s.platform = '{platform.StateKey}' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
            SELECT 1 FROM stored
            """;
    }

    // One warning per account per cycle while its refresh token is close to the end of its life.
    private async Task WarnAboutExpiringRefreshTokensAsync(NpgsqlConnection connection, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT {Id} AS Id, {Label} AS Label, {RefreshTokenExpiry} AS ExpiresAt
            {Join}
            WHERE {Active} AND a.refresh_token IS NOT NULL AND {RefreshTokenExpiryAt("@WarnBefore")}
              AND NOT (COALESCE(s.needs_reauth, false) AND s.token_hash = encode(sha256(convert_to(a.refresh_token, 'UTF8')), 'hex'))
            ORDER BY 3
            LIMIT 1000
            """;
        var expiring = await connection.ReadRowsAsync<(string Id, string? Label, DateTimeOffset ExpiresAt)>(
            new CommandDefinition(sql, new { WarnBefore = now + RefreshTokenWarning }, cancellationToken: cancellationToken));
        foreach (var (id, label, expiresAt) in expiring)
        {
            Log.RefreshTokenExpiring(logger, platform.Platform, new DueAccount(id, label), expiresAt);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(107, LogLevel.Error, "{Platform} {Account}: something unexpected happened once the request may have been sent; the outcome is unknown, so the token is left as it is and not sent again before the in-flight wait")]
        public static partial void UnexpectedAfterSend(ILogger logger, Exception exception, string platform, DueAccount account);

        [LoggerMessage(108, LogLevel.Error, "{Platform}: the platform refused the app's credentials ({Reason}): check {Settings}. No more {Platform} calls this cycle, and no account is marked as failing for it")]
        public static partial void CredentialsRefused(ILogger logger, string platform, string reason, string settings);

        [LoggerMessage(101, LogLevel.Warning, "{Platform} {Account}: expires_in was missing or implausible; assuming {AssumedMinutes} minutes")]
        public static partial void LifetimeAssumed(ILogger logger, string platform, DueAccount account, double assumedMinutes);

        [LoggerMessage(105, LogLevel.Error, "{Platform} {Account}: its failure state could not be saved; it will be tried again without backoff")]
        public static partial void StateNotSaved(ILogger logger, Exception exception, string platform, DueAccount account);

        [LoggerMessage(109, LogLevel.Warning, "{Platform} {Account}: a claim of its token taken at {LeasedAt:HH:mm:ss} UTC ran out without an outcome (the process that held it stopped mid-call); that request may have rotated the token, so the first invalid_grant is not believed")]
        public static partial void LostLease(ILogger logger, string platform, DueAccount account, DateTimeOffset leasedAt);

        [LoggerMessage(111, LogLevel.Warning, "{Platform}: refreshing {Accounts} accounts takes about {Refreshes} requests a day, {Share}% of the daily quota of {PerDay} (x-limit-per-day), more than ETSY_QUOTA_WARN_PERCENT={Percent}%. The main application's own calls count against the same quota: ask the platform for a higher limit before it runs out (the refreshes then fail with 429 and the access tokens expire)")]
        public static partial void DailyQuota(ILogger logger, string platform, long accounts, double refreshes, double share, int perDay, int percent);

        [LoggerMessage(112, LogLevel.Warning, "{Platform}: the daily quota the platform gave could not be stored for status; it is, with the next cycle's first permit")]
        public static partial void QuotaNotStored(ILogger logger, Exception exception, string platform);

        [LoggerMessage(113, LogLevel.Debug, "{Platform} {Account}: sending the refresh request at {At:HH:mm:ss.fff} UTC")]
        public static partial void Sending(ILogger logger, string platform, DueAccount account, DateTimeOffset at);

        [LoggerMessage(110, LogLevel.Warning, "{Platform}: a 429's pause could not be shared with the other replicas through the database; this process pauses")]
        public static partial void PauseNotShared(ILogger logger, Exception exception, string platform);

        [LoggerMessage(106, LogLevel.Warning, "{Platform} {Account}: its refresh token expires at {ExpiresAt:yyyy-MM-dd HH:mm} UTC; the user must re-connect before then")]
        public static partial void RefreshTokenExpiring(ILogger logger, string platform, DueAccount account, DateTimeOffset expiresAt);
    }
}
