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
    ILogger<ShopifyValidator> logger) : IPlatformRefresher
{
    private const string StatePlatform = "shopify";

    /// <summary>The state key that marks a token exchange whose answer may have been lost (see ShopifyTokenExchange).</summary>
    public const string ExchangeStateKey = "shopify_exchange";

    public string Platform => "Shopify";

    public Outcome SuccessOutcome => Outcome.Validated;

    /// <summary>shopify_stores as the catalog described it at the start of this cycle (refreshers are made per cycle).</summary>
    private TableShape? _shape;

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
        return await DatabaseRetry.ReadAsync(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            await ShopDomain.WarnAboutUncallableAsync(connection, T, Platform, logger, ct);
            return await connection.ExecuteScalarAsync<int>(new CommandDefinition(sql, new { Now = time.GetUtcNow(), IntervalSeconds }, cancellationToken: ct));
        }, cancellationToken);
    }

    public async IAsyncEnumerable<DueAccount> FindDueAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // The token and state come with the page: validation needs no lock, so a store costs one round trip (its state).
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
            yield return new DueAccount(row.Id, row.ShopDomain ?? "", Problem(row.ShopDomain, row.Token.Length == 0)) { Prefetched = row };
        }

        Task<IReadOnlyList<ClaimedToken>> PageAsync(ClaimedToken? after) => DatabaseRetry.ReadAsync<IReadOnlyList<ClaimedToken>>(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            var rows = await connection.QueryAsync<ClaimedToken>(new CommandDefinition(
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
        var rows = (await connection.QueryAsync<(string Id, string ShopDomain)>(new CommandDefinition(sql, new { Key = key }, cancellationToken: cancellationToken))).ToList();
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
        var row = account.Prefetched ?? await ReadAsync(account, cancellationToken);
        if (row is null || string.IsNullOrEmpty(row.Token))
        {
            return AccountResult.Skip("no longer active, or its token was removed");
        }

        // Not cancelled by shutdown: a validation that started finishes and its result is recorded.
        var result = await client.ValidateAsync(account.Label!, row.Token, CancellationToken.None);
        // A connection only for the result: none is held while Shopify answers.
        await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
        var hash = AccountState.Hash(row.Token);
        var now = time.GetUtcNow();
        switch (result.Status)
        {
            case CallStatus.Ok:
                await SaveAsync(connection, account, AccountState.Succeeded(now));
                return AccountResult.Success(Outcome.Validated);
            case CallStatus.Rejected:
                return await DeactivateAsync(connection, account, row.Token, hash, result.Reason!);
            default:
                // 429 and THROTTLED pause only this store: Shopify's limits are per app and store.
                var (state, failure) = row.State.Failed(
                    result.Status, result.Reason!, result.OutcomeUnknown, result.RetryAfter, hash, now, options.Value.UnknownOutcomeWait);
                await SaveAsync(connection, account, state);
                return failure;
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
        return await connection.QuerySingleOrDefaultAsync<ClaimedToken>(new CommandDefinition(sql, new { account.Id }, cancellationToken: cancellationToken));
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
                DELETE FROM token_refresh_state WHERE platform = '{StatePlatform}' AND account_id IN (SELECT id FROM deactivated))
            SELECT (SELECT count(*) FROM deactivated) AS Deactivated, EXISTS (SELECT 1 FROM pending) AS ExchangePending
            """;
        var (deactivated, exchangePending) = await connection.QuerySingleAsync<(long, bool)>(new CommandDefinition(
            sql, new { account.Id, RejectedToken = rejectedToken, Hash = hash, Now = time.GetUtcNow() }, cancellationToken: CancellationToken.None));
        return deactivated == 1 ? new AccountResult(Outcome.Deactivated, reason)
            : exchangePending ? AccountResult.PermanentFailure("token_exchange_unanswered: run `tokenrefresh shopify migrate-expiring` again")
            : AccountResult.Skip("its token changed while it was being validated");
    }

    private static string? Problem(string? shopDomain, bool noToken) =>
        noToken ? "access_token is NULL or empty" : ShopDomain.Problem(shopDomain);

    private static partial class Log
    {
        [LoggerMessage(301, LogLevel.Error, "Shopify store {Shop}: its validation state could not be saved")]
        public static partial void StateNotSaved(ILogger logger, Exception exception, string? shop);
    }
}
