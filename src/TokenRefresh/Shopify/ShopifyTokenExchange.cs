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
/// (token_refresh_state, 'shopify_exchange', with the old token's fingerprint), so that if the answer is
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
        return (await connection.QueryAsync<ExchangeCandidate>(new CommandDefinition(sql, new { ShopDomain = shopDomain }, cancellationToken: cancellationToken))).ToList();
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

        var claimSql = $"""
            SELECT st.access_token AS Token FROM shopify_stores st
            WHERE {T.Key("st")} = {T.IdParam("@Id")} AND st.is_active AND st.refresh_token IS NULL AND st.access_token IS NOT NULL
            FOR UPDATE SKIP LOCKED
            """;
        await using var claim = await LockedRow<ClaimedToken>.ClaimAsync(db, claimSql, new { store.Id }, cancellationToken);
        if (claim is null)
        {
            return AccountResult.Skip("changed meanwhile, or locked by another process");
        }

        var old = claim.Row.Token;
        var hash = AccountState.Hash(old);
        await MarkAsync(store.Id, hash, cancellationToken);

        // Not cancelled by Ctrl+C: the exchange is irreversible, so once sent its answer is awaited and stored.
        var result = await client.ExchangeAsync(store.ShopDomain, old, CancellationToken.None);
        if (result.Status != CallStatus.Ok)
        {
            if (result.OutcomeUnknown)
            {
                return AccountResult.TransientFailure($"{result.Reason}: the answer was lost; run the migration again within 7 days");
            }

            await UnmarkAsync(store.Id, cancellationToken);
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
                DELETE FROM token_refresh_state WHERE platform IN ('{Marker}', 'shopify') AND account_id IN (SELECT id FROM stored))
            SELECT 1 FROM stored
            """;
        var now = time.GetUtcNow();
        var parameters = new
        {
            store.Id, pair.AccessToken, pair.RefreshToken, Old = old, ExpiresAt = now + pair.ExpiresIn,
            RefreshExpiresAt = now + (pair.RefreshExpiresIn ?? TimeSpan.FromDays(90)), Now = now,
        };
        var account = new DueAccount(store.Id, store.ShopDomain);
        return await writer.WriteAsync(claim, sql, parameters, now + options.Value.CycleBudget, "Shopify", account) switch
        {
            WriteResult.Stored => AccountResult.Success(Outcome.Refreshed),
            WriteResult.Superseded => AccountResult.Skip("superseded: a new token was stored meanwhile"),
            _ => AccountResult.PermanentFailure("received_but_not_stored: run the migration again within 7 days"),
        };
    }

    // Committed on its own connection before the request leaves, so that a lost answer or a crash leaves it behind.
    private async Task MarkAsync(string id, string hash, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var marker = new AccountState(LastError: "token_exchange_sent", LastErrorAt: now, TokenHash: hash, UnknownOutcomeAt: now);
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        await marker.SaveAsync(connection, Marker, id, now, cancellationToken);
        Log.Sent(logger, id);
    }

    private async Task UnmarkAsync(string id, CancellationToken cancellationToken)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            $"DELETE FROM token_refresh_state WHERE platform = '{Marker}' AND account_id = @id", new { id }, cancellationToken: cancellationToken));
    }

    private static partial class Log
    {
        [LoggerMessage(501, LogLevel.Information, "Shopify store {AccountId}: token exchange sent")]
        public static partial void Sent(ILogger logger, string accountId);
    }
}
