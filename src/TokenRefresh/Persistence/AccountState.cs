using System.Security.Cryptography;
using System.Text;
using Dapper;
using Npgsql;
using TokenRefresh.Platforms;
using TokenRefresh.Scheduling;

namespace TokenRefresh.Persistence;

/// <summary>
/// One account's row in token_refresh_state: how its attempts went and when to try again.
/// The rules that move it from one state to the next are here, in one place, free of I/O.
/// </summary>
internal sealed record AccountState(
    int ConsecutiveFailures = 0,
    string? LastError = null,
    DateTimeOffset? LastErrorAt = null,
    DateTimeOffset? NextAttemptAt = null,
    bool NeedsReauth = false,
    string? TokenHash = null,
    DateTimeOffset? UnknownOutcomeAt = null,
    DateTimeOffset? LastSuccessAt = null)
{
    /// <summary>Backoff after the first failure; it doubles with each further one.</summary>
    public static readonly TimeSpan FirstBackoff = TimeSpan.FromMinutes(1);

    /// <summary>The longest wait between two attempts of a failing account.</summary>
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromHours(1);

    /// <summary>What an invalid_grant is called while it is not believed (the unknown-outcome rule).</summary>
    public const string SuspectInvalidGrant = "invalid_grant_after_unknown_outcome";

    public static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    /// <summary>The state as it applies to <paramref name="tokenHash"/>: failures about another token no longer count.</summary>
    public AccountState For(string tokenHash) => TokenHash is null || TokenHash == tokenHash
        ? this
        : new AccountState(LastSuccessAt: LastSuccessAt);

    public static AccountState Succeeded(DateTimeOffset now) => new(LastSuccessAt: now);

    /// <summary>
    /// Records a failed call and decides what it means for the account: a backoff, or (for a believed
    /// invalid_grant) the re-authorisation flag. <paramref name="minimumWait"/> keeps a retry from racing
    /// a request that may still be in flight. <paramref name="platformDown"/>: the platform is down (<see cref="PlatformHealth"/>),
    /// so the failure is the platform's and the account gets no backoff of its own. <paramref name="accessExpiresAt"/>: when the
    /// account's access token ends, if known; a failure of the platform's never keeps the account waiting past it.
    /// </summary>
    public (AccountState State, AccountResult Result) Failed(
        CallStatus status, string reason, bool outcomeUnknown, TimeSpan? retryAfter, string tokenHash, DateTimeOffset now, TimeSpan minimumWait,
        bool platformDown = false, DateTimeOffset? accessExpiresAt = null)
    {
        var current = For(tokenHash);
        // Neither a probe that fails again and again while the platform is down, nor a 429 (about our pace, not the
        // account: it waits for Retry-After), is the account failing more and more itself.
        var notItsOwn = platformDown || PlatformHealth.IsRateLimited(reason);
        var failures = notItsOwn ? Math.Max(1, current.ConsecutiveFailures) : current.ConsecutiveFailures + 1;

        // The unknown-outcome rule: after an attempt with this token whose outcome was unknown, the first
        // invalid_grant is not believed (the lost answer may have rotated the token and someone may yet store
        // it; a platform may keep the old refresh token usable until its replacement is used); it backs off like a
        // transient failure. The next attempt decides: another invalid_grant is believed.
        var suspect = reason == "invalid_grant" && current.UnknownOutcomeAt is not null && current.LastError != SuspectInvalidGrant;
        if (reason == "invalid_grant" && !suspect)
        {
            var flagged = current with
            {
                ConsecutiveFailures = failures, LastError = reason, LastErrorAt = now, NextAttemptAt = null,
                NeedsReauth = true, TokenHash = tokenHash, UnknownOutcomeAt = null,
            };
            return (flagged, AccountResult.PermanentFailure("invalid_grant: needs re-authorisation") with { NeedsUser = true });
        }

        if (suspect)
        {
            reason = SuspectInvalidGrant;
            status = CallStatus.Transient;
        }

        // A server error or a timeout, the first time or while the platform is down, says nothing about the account: it is
        // tried again next cycle (after the in-flight wait below), so it is refreshed as soon as the platform answers.
        // A suspect invalid_grant is tried once more after the in-flight wait (below): the lease that ran out already
        // covered every write its holder might still make, and a user who must reconnect is best told soon.
        var wait = notItsOwn || suspect || (failures == 1 && PlatformHealth.IsPlatformSide(reason)) ? TimeSpan.Zero : Backoff(failures);
        // A 5xx, timeout or network fault says nothing against the account: while its access token lasts, its backoff ends
        // by half the time left, so a retry comes before the end (the in-flight wait below still applies). Two replicas
        // failing it in turn through an outage that only one of them saw had let its token expire behind a 2-minute wait.
        if (PlatformHealth.IsPlatformSide(reason) && accessExpiresAt is { } expiry && expiry > now && wait > (expiry - now) / 2)
        {
            wait = (expiry - now) / 2;
        }

        if (retryAfter > wait)
        {
            wait = retryAfter.Value;
        }

        if ((outcomeUnknown || suspect) && minimumWait > wait)
        {
            wait = minimumWait;
        }

        var state = current with
        {
            ConsecutiveFailures = failures, LastError = reason, LastErrorAt = now, NextAttemptAt = now + wait,
            NeedsReauth = false, TokenHash = tokenHash, UnknownOutcomeAt = outcomeUnknown ? now : current.UnknownOutcomeAt,
        };
        var result = status == CallStatus.Transient ? AccountResult.TransientFailure(reason) : AccountResult.PermanentFailure(reason);
        return (state, result);
    }

    /// <summary>
    /// A refusal that only another token ends (a kind of token the platform no longer accepts): flagged needs_reauth, so the
    /// main application hears of it, yet tried again after the usual backoff, since the refusal is read from the answer's
    /// wording. Announced (<see cref="AccountResult.NeedsUser"/>) only when the flag is new for this token.
    /// </summary>
    public (AccountState State, AccountResult Result) FlaggedAndRetried(string reason, string tokenHash, DateTimeOffset now)
    {
        var current = For(tokenHash);
        var failures = current.ConsecutiveFailures + 1;
        var state = current with
        {
            ConsecutiveFailures = failures, LastError = reason, LastErrorAt = now, NextAttemptAt = now + Backoff(failures),
            NeedsReauth = true, TokenHash = tokenHash,
        };
        return (state, AccountResult.PermanentFailure(reason) with { NeedsUser = !current.NeedsReauth });
    }

    /// <summary>
    /// A lease on this token ran out uncleared: the process that held it stopped after it may have sent the token, at
    /// <paramref name="leasedAt"/> at the latest; that attempt's outcome is unknown, as if its answer had been lost.
    /// </summary>
    public AccountState AfterLostLease(string tokenHash, DateTimeOffset leasedAt) => For(tokenHash) with
    {
        TokenHash = tokenHash, UnknownOutcomeAt = leasedAt,
    };

    /// <summary>
    /// The SQL condition, on an account's state row <c>s</c> (as ON CONFLICT DO UPDATE sees it) and the hash of the
    /// token to be sent in <c>EXCLUDED.lease_token_hash</c>, under which it may be claimed now: no lease in force, and
    /// not within the wait after an unknown outcome with this token; unless <paramref name="forced"/>, also neither
    /// flagged for re-authorisation nor backing off for this token, nor refreshed already in this cycle (@CycleStart).
    /// A forced claim (`tokenrefresh refresh`) skips those, but never the lease or the wait, so it cannot race a
    /// request that may still be in flight. Parameters: @Now, @UnknownOutcomeWait (seconds), @CycleStart.
    /// </summary>
    public static string ClaimableSql(bool forced) => forced ? Claimable : Claimable + "\n" + ClaimableUnlessForced;

    private const string Claimable = """
        (s.lease_until IS NULL OR s.lease_until <= @Now)
        AND NOT (s.token_hash IS NOT DISTINCT FROM EXCLUDED.lease_token_hash AND s.unknown_outcome_at IS NOT NULL
                 AND s.unknown_outcome_at > @Now - make_interval(secs => @UnknownOutcomeWait))
        """;

    private const string ClaimableUnlessForced = """
        AND (s.token_hash IS DISTINCT FROM EXCLUDED.lease_token_hash OR (NOT s.needs_reauth AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= @Now)))
        AND (s.last_success_at IS NULL OR s.last_success_at < @CycleStart)
        """;

    /// <summary>
    /// After an outage of the platform @Platform: the waits its accounts got from failures of the platform's own since
    /// @Since (<see cref="PlatformHealth.IsPlatformSide"/>, in @Reasons or starting with @Prefix) are lifted, and those
    /// failures no longer count. Flags stay, and so does the in-flight wait after an unknown outcome (unknown_outcome_at).
    /// </summary>
    public const string LiftOutageWaitsSql = """
        UPDATE token_refresh_state
        SET next_attempt_at = NULL, consecutive_failures = 0, updated_at = @Now
        WHERE platform = @Platform AND NOT needs_reauth AND next_attempt_at > @Now AND last_error_at >= @Since
          AND (last_error = ANY(@Reasons) OR starts_with(last_error, @Prefix))
        """;

    public static TimeSpan Backoff(int failures)
    {
        var minutes = FirstBackoff.TotalMinutes * Math.Pow(2, Math.Clamp(failures - 1, 0, 30));
        return minutes >= MaxBackoff.TotalMinutes ? MaxBackoff : TimeSpan.FromMinutes(minutes);
    }

    /// <summary>
    /// Writes the state of one account with <paramref name="sql"/> (<see cref="SaveSql"/>), and ends the lease of
    /// <paramref name="leaseHolder"/> on it. Returns 0 when nothing was written: the account is no longer in its table, or
    /// another process holds a lease on it now (one that took over after this one's ran out owns the row).
    /// </summary>
    public Task<int> SaveAsync(
        NpgsqlConnection connection, string sql, string platform, string accountId, DateTimeOffset now, CancellationToken cancellationToken, string? leaseHolder = null) =>
        connection.ExecuteAsync(new CommandDefinition(sql, new
        {
            Platform = platform, AccountId = accountId, ConsecutiveFailures, LastError, LastErrorAt, NextAttemptAt,
            NeedsReauth, TokenHash, UnknownOutcomeAt, LastSuccessAt, Now = now, LeaseHolder = leaseHolder,
        }, cancellationToken: cancellationToken));

    /// <summary>
    /// The statement <see cref="SaveAsync"/> runs for a platform whose accounts are the rows of <paramref name="table"/>:
    /// written only while @AccountId is one of them, so a deleted account gets no state and is never flagged or announced.
    /// <paramref name="nextCheck"/>: the account's next check (next_check_at), for a platform that schedules its checks.
    /// </summary>
    public static string SaveSql(string table, TableShape shape, string? nextCheck = null) => $"""
        INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, last_error, last_error_at,
            next_attempt_at, needs_reauth, token_hash, unknown_outcome_at, last_success_at, {(nextCheck is null ? "" : "next_check_at, ")}updated_at)
        SELECT @Platform, @AccountId, @ConsecutiveFailures, @LastError, @LastErrorAt,
            @NextAttemptAt, @NeedsReauth, @TokenHash, @UnknownOutcomeAt, @LastSuccessAt, {(nextCheck is null ? "" : nextCheck + ", ")}@Now
        WHERE EXISTS (SELECT 1 FROM {table} a WHERE {shape.Key("a")} = {shape.IdParam("@AccountId")})
        ON CONFLICT (platform, account_id) DO UPDATE SET
            consecutive_failures = EXCLUDED.consecutive_failures, last_error = EXCLUDED.last_error,
            last_error_at = EXCLUDED.last_error_at, next_attempt_at = EXCLUDED.next_attempt_at,
            needs_reauth = EXCLUDED.needs_reauth, token_hash = EXCLUDED.token_hash,
            unknown_outcome_at = EXCLUDED.unknown_outcome_at,
            last_success_at = COALESCE(EXCLUDED.last_success_at, s.last_success_at), {(nextCheck is null ? "" : "next_check_at = EXCLUDED.next_check_at, ")}updated_at = EXCLUDED.updated_at,
            lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
        WHERE s.lease_holder IS NULL OR s.lease_holder = @LeaseHolder
        """;

    /// <summary>
    /// Ends a lease with no outcome to record, if it is still <paramref name="leaseHolder"/>'s. Should this fail, the
    /// lease runs out and the next claim treats the attempt as unknown: cautious, never wrong.
    /// </summary>
    public static async Task ReleaseAsync(NpgsqlDataSource db, string platform, string accountId, string leaseHolder)
    {
        // A row that the claim made and that holds nothing else goes, so nothing is recorded against the account.
        await using var connection = await db.OpenConnectionAsync();
        await connection.ExecuteAsync("""
            WITH emptied AS (
                DELETE FROM token_refresh_state
                WHERE platform = @Platform AND account_id = @AccountId AND lease_holder = @LeaseHolder
                  AND consecutive_failures = 0 AND last_error IS NULL AND NOT needs_reauth AND unknown_outcome_at IS NULL AND last_success_at IS NULL
                RETURNING 1)
            UPDATE token_refresh_state SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
            WHERE platform = @Platform AND account_id = @AccountId AND lease_holder = @LeaseHolder AND NOT EXISTS (SELECT 1 FROM emptied)
            """, new { Platform = platform, AccountId = accountId, LeaseHolder = leaseHolder });
    }

    /// <summary>
    /// The SQL condition, on a row joined to its state as <c>s</c>, under which an account may be called now:
    /// no state, state about another token, or not backing off and not flagged (unless flagged with a next attempt,
    /// <see cref="FlaggedAndRetried"/>). The token's hash comes last: PostgreSQL stops at the first true branch, so only
    /// an account backing off or flagged pays for it.
    /// </summary>
    public static string EligibleSql(string tokenColumn) => $"""
        (s.account_id IS NULL
         OR (NOT s.needs_reauth AND s.next_attempt_at IS NULL) OR s.next_attempt_at <= @Now
         OR s.token_hash IS DISTINCT FROM encode(sha256(convert_to({tokenColumn}, 'UTF8')), 'hex'))
        """;

    /// <summary>The state columns, aliased for <see cref="AccountState"/>'s constructor, from a join as <c>s</c>.</summary>
    public const string Columns = """
        COALESCE(s.consecutive_failures, 0) AS ConsecutiveFailures, s.last_error AS LastError, s.last_error_at AS LastErrorAt,
        s.next_attempt_at AS NextAttemptAt, COALESCE(s.needs_reauth, false) AS NeedsReauth, s.token_hash AS TokenHash,
        s.unknown_outcome_at AS UnknownOutcomeAt, s.last_success_at AS LastSuccessAt
        """;

    /// <summary>
    /// An uncleared lease on the state row <c>s</c> of a holder other than @Holder, for <see cref="ClaimedToken"/> (a claim
    /// only finds one that ran out).
    /// </summary>
    public const string LeaseColumns = """
        CASE WHEN s.lease_holder IS DISTINCT FROM @Holder THEN s.lease_token_hash END AS LeaseTokenHash,
        CASE WHEN s.lease_until IS NOT NULL AND s.lease_holder IS DISTINCT FROM @Holder THEN s.updated_at END AS LeasedAt
        """;

    /// <summary>Names a new lease: the host and process that take it (for operators), and a random part that makes it unique.</summary>
    public static string NewLeaseHolder() => $"{LeaseHolderPrefix}{Random.Shared.NextInt64():x16}";

    // Read once: Environment.MachineName asks the kernel (uname) at every call, and a claim is made many times a second.
    private static readonly string LeaseHolderPrefix = $"{Environment.MachineName}/{Environment.ProcessId}/";
}
