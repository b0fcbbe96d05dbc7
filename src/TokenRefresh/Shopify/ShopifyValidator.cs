using System.Runtime.CompilerServices;
using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Shopify;

/// <summary>Validates the offline token of every active store; deactivates a store only on a definitive 401.</summary>
internal sealed partial class ShopifyValidator(
    NpgsqlDataSource db,
    ShopifyClient client,
    ShopifySchema schema,
    IOptions<TokenRefreshOptions> options,
    TimeProvider time,
    TokenRefreshMetrics metrics,
    PlatformHealthRegistry health,
    NonExpiringCutoff cutoff,
    ILogger<ShopifyValidator> logger) : IPlatformRefresher
{
    private const string StatePlatform = "shopify";

    /// <summary>The state key that marks a token exchange whose answer may have been lost (see ShopifyTokenExchange).</summary>
    public const string ExchangeStateKey = "shopify_exchange";

    public string Platform => "Shopify";

    public string StateKey => StatePlatform;

    public string Group => "Shopify";

    // Shopify's limits are per store: no permit. Validation sends the token it read with the page and writes only its
    // state and is_active, guarded by that token, so it needs no claim.
    public Task<(string? NotNow, TimeSpan Late)> WaitForPermitAsync(DateTimeOffset deadline, CancellationToken claiming) => Task.FromResult<(string?, TimeSpan)>((null, default));

    public TimeSpan? TryTakePermit() => TimeSpan.Zero;

    public Task<IReadOnlyList<Claim>> ClaimAsync(IReadOnlyList<DueAccount> accounts, DateTimeOffset deadline, CancellationToken claiming) =>
        Task.FromResult<IReadOnlyList<Claim>>(accounts.Select(a => new Claim(a)).ToList());

    /// <summary>The validations of this cycle that succeeded and are not recorded yet.</summary>
    private readonly Lock _validatedLock = new();
    private List<(string Id, DateTimeOffset At)> _validated = [];

    /// <summary>How many successful validations are recorded in one statement.</summary>
    private const int ValidatedBatch = 32;

    /// <summary>
    /// Stores the validations waiting, then decides on the cycle's rejections: deactivated when they are within the guard's
    /// limit and the cycle before was no wave; else all stay active, and are validated again next cycle.
    /// </summary>
    public async Task<IReadOnlyList<(DueAccount Account, AccountResult Result)>> FinishCycleAsync()
    {
        await SaveValidatedAsync(force: true);
        _refused.Say(logger);
        List<(DueAccount Account, ClaimedToken Row, string Hash, string Reason)> rejected;
        lock (_rejectedLock)
        {
            rejected = [.. _rejected];
            _rejected.Clear();
        }

        var wave = _guard.Tripped;
        var afterWave = health.For(Group).RejectionWave(wave);
        if (rejected.Count == 0)
        {
            return [];
        }

        if (wave)
        {
            Log.DeactivationPaused(logger, _guard.Limit);
        }
        else if (afterWave)
        {
            Log.DeactivationHeldAfterWave(logger, rejected.Count);
        }

        var results = new List<(DueAccount, AccountResult)>();
        var now = time.GetUtcNow();
        foreach (var (account, row, hash, reason) in rejected)
        {
            try
            {
                await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
                if (!afterWave)
                {
                    results.Add((account, await DeactivateAsync(connection, account, row.Token, hash, reason)));
                    continue;
                }

                // Too many rejections at once to be the stores' own doing: they stay active, and are tried again next cycle.
                metrics.DeactivationPaused(Platform);
                var (state, failure) = row.State.Failed(CallStatus.Transient, DeactivationPaused, false, null, hash, now, options.Value.UnknownOutcomeWait);
                await SaveAsync(connection, account, state);
                results.Add((account, failure));
            }
            catch (NpgsqlException e)
            {
                // The store stays active and is validated again.
                Log.StateNotSaved(logger, e, account.Label);
                results.Add((account, AccountResult.TransientFailure("database_error")));
            }
        }

        return results;
    }

    public Outcome SuccessOutcome => Outcome.Validated;

    /// <summary>What a store whose 401 came while deactivation was paused is reported as.</summary>
    public const string DeactivationPaused = "deactivation_paused";

    /// <summary>shopify_stores as the catalog described it at the start of this cycle (refreshers are made per cycle).</summary>
    private TableShape? _shape;

    /// <summary>The incident guard of this cycle (refreshers are made per cycle).</summary>
    private readonly IncidentGuard _guard = new();

    /// <summary>This cycle's stores whose non-expiring token Shopify refused, said in one line when the cycle ends.</summary>
    private readonly RefusedStores _refused = new();

    // The stores rejected (twice) this cycle, deactivated or not when its validations are done.
    private readonly List<(DueAccount Account, ClaimedToken Row, string Hash, string Reason)> _rejected = [];
    private readonly Lock _rejectedLock = new();

    private TableShape T => _shape ?? throw new InvalidOperationException("The table's shape is read first (IsEnabledAsync).");

    private string From => $"""
        FROM {ShopifySchema.Table} st
        LEFT JOIN token_refresh_state s ON s.platform = '{StatePlatform}' AND s.account_id = {T.Id("st")}
        """;

    public async Task<bool> IsEnabledAsync(CancellationToken cancellationToken)
    {
        _shape = await schema.ReadAsync(cancellationToken);
        return true;
    }

    // Stores with an expiring token are refreshed instead (ShopifyRefreshPlatform): the refresh proves the token.
    private string NonExpiring => ShopifySchema.HasExpiringTokens(T) ? "AND st.refresh_token IS NULL" : "";

    // SHOPIFY_VALIDATE_INTERVAL_MINUTES: a store whose last check succeeded is due again when it crosses its own
    // boundary of the interval; the boundaries are spread over the interval by a hash of the store's id, so an
    // equal share of the stores comes due in every cycle. A failing store follows its backoff instead.
    private string DueFilter => $"""
        st.is_active {NonExpiring} AND {ShopDomain.Sql("st.shop_domain")} AND {AccountState.EligibleSql("COALESCE(st.access_token, '')")}
        AND {IntervalSql(T.Key("st"))}
        """;

    /// <summary>The interval condition on a store whose key is <paramref name="storeId"/>, joined to its state as <c>s</c> (parameters @Now, @IntervalSeconds).</summary>
    public static string IntervalSql(string storeId) => $"""
        (@IntervalSeconds = 0 OR s.account_id IS NULL OR s.last_error_at IS NOT NULL OR s.last_success_at IS NULL
         OR floor((extract(epoch FROM @Now::timestamptz) - (abs(hashtext({storeId}::text)::bigint) % @IntervalSeconds)) / @IntervalSeconds)
            > floor((extract(epoch FROM s.last_success_at) - (abs(hashtext({storeId}::text)::bigint) % @IntervalSeconds)) / @IntervalSeconds))
        """;

    private long IntervalSeconds => (long)options.Value.ShopifyValidateInterval.TotalSeconds;

    public async Task<int> CountDueAsync(CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT count(*)::int
            {From}
            WHERE {DueFilter}
            """;
        var due = await DatabaseRetry.ReadAsync(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            await ShopDomain.WarnAboutUncallableAsync(connection, T, Platform, logger, ct);
            await cutoff.WarnAsync(connection, T, ct);
            return await connection.ExecuteScalarAsync<int>(new CommandDefinition(sql, new { Now = time.GetUtcNow(), IntervalSeconds }, cancellationToken: ct));
        }, cancellationToken);
        _guard.Due = due;
        return due;
    }

    public async IAsyncEnumerable<DueAccount> FindDueAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // The token and state come with the page: validation needs no claim, so a store costs one round trip (its state).
        var sql = $"""
            SELECT {T.Id("st")} AS Id, st.shop_domain AS ShopDomain, COALESCE(st.access_token, '') AS Token, {AccountState.Columns}
            {From}
            WHERE {DueFilter} AND {T.After("st", "@AfterId")}
            ORDER BY {T.Key("st")}
            LIMIT {Paging.PageSize}
            """;
        var now = time.GetUtcNow();
        await foreach (var row in Paging.ReadAsync<ClaimedToken>(PageAsync).WithCancellation(cancellationToken))
        {
            yield return new DueAccount(row.Id, row.ShopDomain ?? "", Problem(row.ShopDomain, row.Token.Length == 0)) { Claimed = row };
        }

        Task<IReadOnlyList<ClaimedToken>> PageAsync(ClaimedToken? after) => DatabaseRetry.ReadAsync<IReadOnlyList<ClaimedToken>>(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            var rows = await connection.ReadRowsAsync<ClaimedToken>(new CommandDefinition(
                sql, new { Now = now, IntervalSeconds, AfterId = after?.Id }, cancellationToken: ct));
            return rows.AsList();
        }, cancellationToken).AsTask();
    }

    public async Task<DueAccount?> FindAccountAsync(string kind, string key, CancellationToken cancellationToken)
    {
        if (kind != "shop")
        {
            return null;
        }

        await IsEnabledAsync(cancellationToken);
        var sql = $"SELECT {T.Id("st")} AS Id, st.shop_domain AS ShopDomain FROM {ShopifySchema.Table} st WHERE st.shop_domain = @Key AND st.is_active {NonExpiring}";
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var rows = (await connection.ReadRowsAsync<(string Id, string ShopDomain)>(new CommandDefinition(sql, new { Key = key }, cancellationToken: cancellationToken))).ToList();
        return rows switch
        {
            [] => null,
            [var r] => new DueAccount(r.Id, r.ShopDomain, ShopDomain.Problem(r.ShopDomain)) { Forced = true },
            // The main application's table does not make shop_domain unique: name no row rather than a random one.
            [var r, ..] => new DueAccount(r.Id, r.ShopDomain, $"{rows.Count} active stores have shop_domain {key}") { Forced = true },
        };
    }

    public async Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken cancellationToken)
    {
        var row = account.Claimed ?? await ReadAsync(account, cancellationToken);
        if (row is null || string.IsNullOrEmpty(row.Token))
        {
            return AccountResult.Skip("no longer active, or its token was removed");
        }

        // Not cancelled by shutdown: a validation that started finishes and its result is recorded.
        var result = await client.ValidateAsync(account.Label!, row.Token, CancellationToken.None);
        if (result.Status == CallStatus.Rejected && (!_guard.Tripped || account.Forced))
        {
            // One 401 switches no store off: it is deactivated only when a second call is rejected too.
            result = await client.ValidateAsync(account.Label!, row.Token, CancellationToken.None);
        }

        if (result.Error is { } error)
        {
            Log.UnexpectedAfterSend(logger, error, account.Label);
        }

        var platformDown = health.For(Group).Record(result.Status, result.Reason);

        var now = time.GetUtcNow();
        if (result.Status == CallStatus.Ok && !account.Forced)
        {
            // Successes are recorded a batch at a time (and the rest when the cycle ends): one statement for many stores.
            lock (_validatedLock)
            {
                _validated.Add((account.Id, now));
            }

            await SaveValidatedAsync(force: false);
            return AccountResult.Success(Outcome.Validated);
        }

        var hash = AccountState.Hash(row.Token);
        if (result.Status == CallStatus.Rejected && !account.Forced)
        {
            // Decided when the cycle's validations are done: only then is it known whether these are a few stores' own
            // rejections, or a wave (Shopify's incident, a wrong setting) that must switch none of them off.
            _guard.Rejected();
            lock (_rejectedLock)
            {
                _rejected.Add((account, row, hash, result.Reason!));
            }

            return AccountResult.DecidedLater;
        }

        // A connection only for the result: none is held while Shopify answers.
        await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
        switch (result.Status)
        {
            case CallStatus.Ok:
                await SaveAsync(connection, account, AccountState.Succeeded(now));
                return AccountResult.Success(Outcome.Validated);
            case CallStatus.Rejected:
                return await DeactivateAsync(connection, account, row.Token, hash, result.Reason!);
            case CallStatus.Permanent when result.Reason == ShopifyClient.NonExpiringRefused:
                // Not deactivated: the store is fine, its token is of the kind Shopify stops accepting. Flagged for the
                // main application, backed off, and said once for the cycle with the command that moves it.
                var (flagged, refused) = row.State.FlaggedAndRetried(result.Reason, hash, now);
                await SaveAsync(connection, account, flagged);
                _refused.Add(account.Label);
                return refused with { Quiet = true };
            default:
                // 429 and THROTTLED pause only this store: Shopify's limits are per app and store.
                var (state, failure) = row.State.Failed(
                    result.Status, result.Reason!, result.OutcomeUnknown, result.RetryAfter, hash, now, options.Value.UnknownOutcomeWait, platformDown);
                await SaveAsync(connection, account, state);
                return failure;
        }
    }

    // Records the successful validations waiting, once there is a batch of them (or all, when the cycle ends): the
    // state each gets is AccountState.Succeeded, in key order, so that two replicas' batches never deadlock.
    private async Task SaveValidatedAsync(bool force)
    {
        List<(string Id, DateTimeOffset At)> batch;
        lock (_validatedLock)
        {
            if (_validated.Count == 0 || (!force && _validated.Count < ValidatedBatch))
            {
                return;
            }

            (batch, _validated) = (_validated, []);
        }

        try
        {
            await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
            await connection.ExecuteAsync(new CommandDefinition($"""
                INSERT INTO token_refresh_state AS s (platform, account_id, consecutive_failures, needs_reauth, last_success_at, updated_at)
                SELECT '{StatePlatform}', v.id, 0, false, v.at, v.at
                FROM unnest(CAST(@Ids AS text[]), CAST(@Ats AS timestamptz[])) AS v(id, at)
                ORDER BY v.id
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    consecutive_failures = 0, last_error = NULL, last_error_at = NULL, next_attempt_at = NULL, needs_reauth = false,
                    token_hash = NULL, unknown_outcome_at = NULL, last_success_at = EXCLUDED.last_success_at, updated_at = EXCLUDED.updated_at
                """, new { Ids = batch.Select(v => v.Id).ToArray(), Ats = batch.Select(v => v.At).ToArray() }));
        }
        catch (NpgsqlException e)
        {
            Log.ValidatedNotSaved(logger, e, batch.Count);
        }
    }

    // For an account named by an operator (`tokenrefresh refresh --shop`), not read with a page.
    private async Task<ClaimedToken?> ReadAsync(DueAccount account, CancellationToken cancellationToken)
    {
        var sql = $"""
            SELECT st.access_token AS Token, {AccountState.Columns}
            {From}
            WHERE {T.Key("st")} = {T.IdParam("@Id")} AND st.is_active {NonExpiring}
            """;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        return await connection.ReadRowOrDefaultAsync<ClaimedToken>(new CommandDefinition(sql, new { account.Id }, cancellationToken: cancellationToken));
    }

    private async Task SaveAsync(NpgsqlConnection connection, DueAccount account, AccountState state)
    {
        try
        {
            await state.SaveAsync(connection, StatePlatform, account.Id, time.GetUtcNow(), CancellationToken.None);
        }
        catch (NpgsqlException e)
        {
            Log.StateNotSaved(logger, e, account.Label);
        }
    }

    /// <summary>The channel on which flagged accounts and switched-off stores are announced (docs/reauth.md).</summary>
    public const string ReauthChannel = "tokenrefresh_reauth";

    private async Task<AccountResult> DeactivateAsync(NpgsqlConnection connection, DueAccount account, string rejectedToken, string hash, string reason)
    {
        // Only the token that was rejected: if the main application stored a new one meanwhile, the store stays active.
        // Nor while a token exchange of that token may have succeeded unanswered: the exchange revoked it, and
        // running migrate-expiring again recovers the pair.
        var sql = $"""
            WITH pending AS (
                SELECT 1 FROM token_refresh_state m
                WHERE m.platform = '{ExchangeStateKey}' AND m.account_id = @Id AND m.token_hash = @Hash
                  AND m.unknown_outcome_at > @Now - interval '7 days'),
            deactivated AS (
                UPDATE {ShopifySchema.Table} st
                SET is_active = false, updated_at = {T.At("updated_at", "@Now")}
                WHERE {T.Key("st")} = {T.IdParam("@Id")} AND st.is_active AND st.access_token = @RejectedToken AND NOT EXISTS (SELECT 1 FROM pending)
                RETURNING {T.Id("st")} AS id),
            cleared AS (
                DELETE FROM token_refresh_state WHERE platform = '{StatePlatform}' AND account_id IN (SELECT id FROM deactivated)),
            notified AS (
                SELECT pg_notify('{ReauthChannel}', json_build_object('event', 'deactivated', 'platform', 'shopify',
                    'account_id', id::text, 'shop_domain', @Shop, 'reason', @Reason, 'at', @Now)::text) FROM deactivated)
            -- Counted through the notification (one per store switched off), so that it is sent: a CTE nobody reads does not run.
            SELECT (SELECT count(*) FROM notified) AS Deactivated, EXISTS (SELECT 1 FROM pending) AS ExchangePending
            """;
        var (deactivated, exchangePending) = await connection.ReadRowAsync<(long, bool)>(new CommandDefinition(
            sql, new { account.Id, RejectedToken = rejectedToken, Hash = hash, Now = time.GetUtcNow(), Shop = account.Label, Reason = reason },
            cancellationToken: CancellationToken.None));
        return deactivated == 1 ? new AccountResult(Outcome.Deactivated, reason)
            : exchangePending ? AccountResult.PermanentFailure("token_exchange_unanswered: run `tokenrefresh shopify migrate-expiring` again")
            : AccountResult.Skip("its token changed while it was being validated");
    }

    private static string? Problem(string? shopDomain, bool noToken) =>
        noToken ? "access_token is NULL or empty" : ShopDomain.Problem(shopDomain);

    private static partial class Log
    {
        [LoggerMessage(305, LogLevel.Warning, "Shopify: {Count} stores were rejected (401, confirmed) in the cycle after a wave of rejections; they stay active until a calm cycle confirms them (reported as deactivation_paused)")]
        public static partial void DeactivationHeldAfterWave(ILogger logger, int count);

        [LoggerMessage(302, LogLevel.Error, "Shopify: more than {Limit} stores were rejected (401, confirmed) in this cycle, more than stores uninstall in a few minutes: none of them is deactivated, in this cycle or the next, and those stores stay active (reported as deactivation_paused). Check Shopify's status page, SHOPIFY_API_BASE_URL and SHOPIFY_API_VERSION, and whether the app's tokens were revoked (non-expiring offline tokens of public apps stop working on 2027-01-01: `tokenrefresh shopify migrate-expiring`)")]
        public static partial void DeactivationPaused(ILogger logger, int limit);

        [LoggerMessage(303, LogLevel.Error, "Shopify store {Shop}: something unexpected happened once the request may have been sent; the store is left as it is")]
        public static partial void UnexpectedAfterSend(ILogger logger, Exception exception, string? shop);

        [LoggerMessage(304, LogLevel.Error, "Shopify: the validation state of {Count} stores could not be saved; they are validated again at the next cycle")]
        public static partial void ValidatedNotSaved(ILogger logger, Exception exception, int count);

        [LoggerMessage(301, LogLevel.Error, "Shopify store {Shop}: its validation state could not be saved")]
        public static partial void StateNotSaved(ILogger logger, Exception exception, string? shop);

        [LoggerMessage(306, LogLevel.Error, "Shopify: {Count} stores' non-expiring offline tokens were refused (non_expiring_token_refused), e.g. {Examples}. They stay active and are flagged for the main application (token_refresh_needs_reauth); move them to expiring tokens: `tokenrefresh shopify migrate-expiring --all --dry-run`, then `--all --yes`")]
        public static partial void NonExpiringRefused(ILogger logger, int count, string examples);
    }

    /// <summary>Counts the cycle's refused stores, and keeps a few of their domains for the one line that says them.</summary>
    private sealed class RefusedStores
    {
        private const int Examples = 3;
        private readonly Lock _lock = new();
        private readonly List<string> _examples = [];
        private int _count;

        public void Add(string? shop)
        {
            lock (_lock)
            {
                _count++;
                if (_examples.Count < Examples && shop is not null)
                {
                    _examples.Add(shop);
                }
            }
        }

        public void Say(ILogger logger)
        {
            lock (_lock)
            {
                if (_count > 0)
                {
                    Log.NonExpiringRefused(logger, _count, string.Join(", ", _examples));
                }
            }
        }
    }
}

/// <summary>
/// The incident guard: a cycle deactivates its rejected stores only if they are at most <see cref="Limit"/>, the larger of
/// <see cref="Floor"/> and <see cref="Share"/> of the stores due, and the cycle before was no wave (its tail is held too). Real uninstalls come a few a day; hundreds of 401s in one cycle are Shopify's
/// incident, a wrong base URL or API version, or revoked app tokens, and switching those stores off would stop the
/// main application for all of them. The floor lets a small shop list (or a handful of real uninstalls) go through.
/// </summary>
internal sealed class IncidentGuard
{
    public const int Floor = 5;
    public const double Share = 0.02;

    private int _confirmed;

    /// <summary>Stores due this cycle, from which the limit follows.</summary>
    public int Due { get; set; }

    public int Limit => Math.Max(Floor, (int)Math.Ceiling(Due * Share));

    /// <summary>More stores rejected this cycle than the limit: a wave, and none of them is deactivated.</summary>
    public bool Tripped => Volatile.Read(ref _confirmed) > Limit;

    /// <summary>Counts one confirmed rejection.</summary>
    public void Rejected() => Interlocked.Increment(ref _confirmed);
}
