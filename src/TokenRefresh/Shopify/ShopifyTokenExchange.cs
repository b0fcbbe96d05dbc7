using Dapper;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;

namespace TokenRefresh.Shopify;

/// <summary>An active store that still has a non-expiring offline token. <paramref name="Pending"/>: an earlier exchange went unanswered.</summary>
public sealed record ExchangeCandidate(string Id, string ShopDomain, bool Pending)
{
    public override string ToString() => $"{ShopDomain} ({Id})";
}

/// <summary>
/// Moves stores from a non-expiring offline token to an expiring pair (token exchange, CONTRACTS.md).
/// Irreversible at Shopify: the old token is revoked. Before the request is sent a marker is committed
/// (token_refresh_state, 'shopify_exchange', with the old token's fingerprint and a lease), so that if the answer is
/// lost the validator does not deactivate the store for the 401 its revoked token now gets, and running
/// the migration again (Shopify answers a repeat within 7 days with the same pair) completes it.
/// </summary>
internal sealed partial class ShopifyTokenExchange(
    NpgsqlDataSource db,
    ShopifyClient client,
    ShopifySchema schema,
    PairWriter writer,
    TimeProvider time,
    IOptions<TokenRefreshOptions> options,
    ILogger<ShopifyTokenExchange> logger)
{
    private const string Marker = ShopifyValidator.ExchangeStateKey;

    /// <summary>shopify_stores as the catalog describes it, read by <see cref="CandidatesAsync"/>.</summary>
    private TableShape? _shape;

    private TableShape T => _shape ?? throw new InvalidOperationException("The table's shape is read first (CandidatesAsync).");

    /// <exception cref="SchemaException">shopify_stores lacks the expiring-token columns, or what validation needs.</exception>
    public async Task<IReadOnlyList<ExchangeCandidate>> CandidatesAsync(string? shopDomain, CancellationToken cancellationToken)
    {
        _shape = await schema.ReadAsync(cancellationToken);
        if (!ShopifySchema.HasExpiringTokens(T))
        {
            throw new SchemaException(
                $"shopify_stores cannot hold expiring tokens ({T.OptionalMissing}): apply scripts/sql/shopify-expiring-tokens.sql, then scripts/sql/service-grants.sql, first");
        }

        var sql = $"""
            SELECT {T.Id("st")} AS Id, st.shop_domain AS ShopDomain, (s.account_id IS NOT NULL) AS Pending
            FROM shopify_stores st
            LEFT JOIN token_refresh_state s ON s.platform = '{Marker}' AND s.account_id = {T.Id("st")}
                AND s.token_hash = encode(sha256(convert_to(st.access_token, 'UTF8')), 'hex')
            WHERE st.is_active AND st.refresh_token IS NULL AND st.access_token IS NOT NULL AND st.access_token <> ''
              AND (@ShopDomain::text IS NULL OR st.shop_domain = @ShopDomain)
            ORDER BY st.shop_domain
            """;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        return (await connection.ReadRowsAsync<ExchangeCandidate>(new CommandDefinition(sql, new { ShopDomain = shopDomain }, cancellationToken: cancellationToken))).ToList();
    }

    /// <summary>Whether an active store of that domain already has an expiring token (a repeat after success).</summary>
    public async Task<bool> AlreadyExpiringAsync(string shopDomain, CancellationToken cancellationToken)
    {
        const string sql = "SELECT EXISTS (SELECT 1 FROM shopify_stores WHERE shop_domain = @shopDomain AND is_active AND refresh_token IS NOT NULL)";
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(sql, new { shopDomain }, cancellationToken: cancellationToken));
    }

    public async Task<AccountResult> MigrateAsync(ExchangeCandidate store, CancellationToken cancellationToken)
    {
        if (ShopDomain.Problem(store.ShopDomain) is { } problem)
        {
            return AccountResult.Skip(problem);
        }

        // The marker is the claim: committed in one statement, with a lease, before the request is sent, and only while
        // no other process holds one (a second `migrate-expiring` running at once skips the store).
        var claimSql = $"""
            WITH store AS (
                SELECT {T.Id("st")} AS id, st.access_token AS Token, encode(sha256(convert_to(st.access_token, 'UTF8')), 'hex') AS hash, s.xmin AS version
                FROM shopify_stores st
                LEFT JOIN token_refresh_state s ON s.platform = '{Marker}' AND s.account_id = {T.Id("st")}
                WHERE {T.Key("st")} = {T.IdParam("@Id")} AND st.is_active AND st.refresh_token IS NULL AND st.access_token IS NOT NULL),
            marked AS (
                INSERT INTO token_refresh_state AS s (platform, account_id, last_error, last_error_at, token_hash, unknown_outcome_at,
                    lease_until, lease_token_hash, lease_holder, updated_at)
                SELECT '{Marker}', id, 'token_exchange_sent', @Now, hash, @Now, @LeaseUntil, hash, @Holder, @Now FROM store
                ON CONFLICT (platform, account_id) DO UPDATE SET
                    last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at, token_hash = EXCLUDED.token_hash,
                    unknown_outcome_at = EXCLUDED.unknown_outcome_at, lease_until = EXCLUDED.lease_until,
                    lease_token_hash = EXCLUDED.lease_token_hash, lease_holder = EXCLUDED.lease_holder, updated_at = EXCLUDED.updated_at
                WHERE s.xmin = (SELECT version FROM store) AND (s.lease_until IS NULL OR s.lease_until <= @Now)
                RETURNING 1)
            SELECT Token FROM store WHERE EXISTS (SELECT 1 FROM marked)
            """;
        var holder = AccountState.NewLeaseHolder();
        var now = time.GetUtcNow();
        string? old;
        cancellationToken.ThrowIfCancellationRequested();
        // Not cancelled once begun: a marker that the server committed is always known to this process, which then ends its lease.
        await using (var connection = await db.OpenConnectionAsync(CancellationToken.None))
        {
            old = await connection.ReadRowOrDefaultAsync<string>(new CommandDefinition(
                claimSql, new { store.Id, Now = now, LeaseUntil = now + options.Value.LeaseLength, Holder = holder }));
        }

        if (old is null)
        {
            return AccountResult.Skip("changed meanwhile, or being migrated by another process");
        }

        Log.Sent(logger, store.Id);

        // Not cancelled by Ctrl+C: the exchange is irreversible, so once sent its answer is awaited and stored.
        var result = await client.ExchangeAsync(store.ShopDomain, old, CancellationToken.None);
        if (result.Status != CallStatus.Ok)
        {
            if (result.OutcomeUnknown)
            {
                // The marker stays (the validator will not deactivate the store for its revoked token); the lease ends.
                await AccountState.ReleaseAsync(db, Marker, store.Id, holder);
                return AccountResult.TransientFailure($"{result.Reason}: the answer was lost; run the migration again within 7 days");
            }

            await UnmarkAsync(store.Id, holder);
            return result.Status == CallStatus.Transient ? AccountResult.TransientFailure(result.Reason!) : AccountResult.PermanentFailure(result.Reason!);
        }

        var pair = result.Value!;
        var sql = $"""
            WITH stored AS (
                UPDATE shopify_stores st
                SET access_token = @AccessToken, refresh_token = @RefreshToken, token_expires_at = {T.At("token_expires_at", "@ExpiresAt")},
                    refresh_token_expires_at = {T.At("refresh_token_expires_at", "@RefreshExpiresAt")}, updated_at = {T.At("updated_at", "@Now")}
                WHERE {T.Key("st")} = {T.IdParam("@Id")} AND ((st.access_token = @Old AND st.refresh_token IS NULL) OR st.refresh_token = @RefreshToken)
                RETURNING {T.Id("st")} AS id),
            cleared AS (
                DELETE FROM token_refresh_state WHERE platform IN ('{Marker}', 'shopify') AND account_id IN (SELECT id FROM stored)),
            released AS (
                UPDATE token_refresh_state s SET lease_until = NULL, lease_token_hash = NULL, lease_holder = NULL
                WHERE s.platform = '{Marker}' AND s.account_id = @Id AND s.lease_holder = @Holder AND NOT EXISTS (SELECT 1 FROM stored))
            SELECT 1 FROM stored
            """;
        now = time.GetUtcNow();
        var parameters = new
        {
            store.Id, pair.AccessToken, pair.RefreshToken, Old = old, ExpiresAt = now + pair.ExpiresIn,
            RefreshExpiresAt = now + (pair.RefreshExpiresIn ?? TimeSpan.FromDays(90)), Now = now, Holder = holder,
        };
        var account = new DueAccount(store.Id, store.ShopDomain);
        return await writer.WriteAsync(sql, parameters, now + options.Value.CycleBudget, "Shopify", account) switch
        {
            WriteResult.Stored => AccountResult.Success(Outcome.Refreshed),
            WriteResult.Superseded => AccountResult.Skip("superseded: a new token was stored meanwhile"),
            _ => AccountResult.PermanentFailure("received_but_not_stored: run the migration again within 7 days"),
        };
    }

    private async Task UnmarkAsync(string id, string holder)
    {
        await using var connection = await db.OpenConnectionAsync();
        await connection.ExecuteAsync($"DELETE FROM token_refresh_state WHERE platform = '{Marker}' AND account_id = @id AND lease_holder = @holder", new { id, holder });
    }

    private static partial class Log
    {
        [LoggerMessage(501, LogLevel.Information, "Shopify store {AccountId}: token exchange sent")]
        public static partial void Sent(ILogger logger, string accountId);
    }
}
