using System.Runtime.CompilerServices;
using Dapper;
using Microsoft.Extensions.Logging;
using TokenRefresh.Settings;
using Npgsql;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>An active store that still has a non-expiring offline token. <paramref name="Pending"/>: an earlier exchange went unanswered.</summary>
public sealed record ExchangeCandidate(string Id, string ShopDomain, bool Pending)
{
    public override string ToString() => $"{ShopDomain} ({Id})";
}

/// <summary>How one store's exchange ended.</summary>
public enum ExchangeOutcome
{
    /// <summary>It holds an expiring pair now.</summary>
    Migrated,

    /// <summary>It already held an expiring token when its turn came.</summary>
    AlreadyMigrated,

    /// <summary>Shopify refused the old token as unknown (invalid_grant, 401): the app was uninstalled or the token revoked.</summary>
    Uninstalled,

    /// <summary>Shopify refused the exchange for another lasting reason (the token already refused, the shop unavailable).</summary>
    Refused,

    /// <summary>The request may have been processed but its answer was lost: repeat within 7 days for the same pair.</summary>
    Unanswered,

    /// <summary>Not exchanged, and nothing was done at Shopify (a 429, no connection, the database): try again.</summary>
    TryAgain,

    /// <summary>Another process holds the store's claim (or held it and stopped: the claim then runs out).</summary>
    Busy,

    /// <summary>Not sent: its shop_domain cannot be called, or the row changed meanwhile.</summary>
    Skipped,

    /// <summary>Shopify refused the app's credentials: nothing else should be sent.</summary>
    CredentialsRefused,
}

/// <summary>One store's exchange: how it ended, and why (never a token).</summary>
public sealed record ExchangeResult(ExchangeOutcome Outcome, string? Reason = null);

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
    CycleSettings settings,
    ILogger<ShopifyTokenExchange> logger)
{
    private const string Marker = ShopifyValidationStatements.ExchangeStateKey;

    /// <summary>The statements for shopify_stores as the catalog describes it, built by <see cref="PrepareAsync"/>.</summary>
    private ShopifyExchangeStatements? _sql;

    private ShopifyExchangeStatements Sql => _sql ?? throw new InvalidOperationException("The table's shape is read first (PrepareAsync).");

    /// <summary>Reads the table's shape; returns how many stores are left to migrate, and how many hold an expiring token already.</summary>
    /// <exception cref="SchemaException">shopify_stores lacks the expiring-token columns, or what validation needs.</exception>
    public async Task<(long Left, long Expiring)> PrepareAsync(CancellationToken cancellationToken)
    {
        var shape = await schema.ReadAsync(cancellationToken);
        if (!ShopifySchema.HasExpiringTokens(shape))
        {
            throw new SchemaException(
                $"shopify_stores cannot hold expiring tokens ({shape.OptionalMissing}): apply {NonExpiringCutoff.ColumnsScript}, then scripts/sql/service-grants.sql, first");
        }

        _sql = new ShopifyExchangeStatements(shape, ShopifyValidation.Id);
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        return await connection.ReadRowAsync<(long, long)>(new CommandDefinition(Sql.Counts, cancellationToken: cancellationToken));
    }

    /// <summary>The stores left to migrate (one, by its shop_domain, or all), in key order, a page at a time.</summary>
    public async IAsyncEnumerable<ExchangeCandidate> CandidatesAsync(string? shopDomain, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var store in Paging.ReadAsync<ExchangeCandidate>(PageAsync).WithCancellation(cancellationToken))
        {
            yield return store;
        }

        async Task<IReadOnlyList<ExchangeCandidate>> PageAsync(ExchangeCandidate? after)
        {
            await using var connection = await db.OpenConnectionAsync(cancellationToken);
            return await connection.ReadRowsAsync<ExchangeCandidate>(new CommandDefinition(
                Sql.Candidates, new { ShopDomain = shopDomain, AfterId = after?.Id }, cancellationToken: cancellationToken));
        }
    }

    /// <summary>Whether an active store of that domain already has an expiring token (a repeat after success).</summary>
    public async Task<bool> AlreadyExpiringAsync(string shopDomain, CancellationToken cancellationToken)
    {
        const string sql = "SELECT EXISTS (SELECT 1 FROM shopify_stores WHERE shop_domain = @shopDomain AND is_active AND refresh_token IS NOT NULL)";
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(sql, new { shopDomain }, cancellationToken: cancellationToken));
    }

    /// <summary>Exchanges one store's token and stores the pair. Once sent, the answer is awaited and stored whatever <paramref name="cancellationToken"/> says.</summary>
    public async Task<ExchangeResult> MigrateAsync(ExchangeCandidate store, CancellationToken cancellationToken)
    {
        if (ShopDomain.Problem(store.ShopDomain) is { } problem)
        {
            return new(ExchangeOutcome.Skipped, problem);
        }

        var holder = AccountState.NewLeaseHolder();
        cancellationToken.ThrowIfCancellationRequested();
        var old = await ClaimAsync(store, holder);
        if (old is null)
        {
            return await WhyNotClaimedAsync(store);
        }

        Log.Sent(logger, store.Id);
        // Not cancelled by Ctrl+C: the exchange is irreversible, so once sent its answer is awaited and stored.
        var result = await client.ExchangeAsync(store.ShopDomain, old, CancellationToken.None);
        if (result.Status == CallStatus.Ok)
        {
            return await StoreAsync(store, old, holder, result.Value!);
        }

        if (result.OutcomeUnknown)
        {
            // The marker stays (the validator will not deactivate the store for its revoked token); the lease ends.
            await AccountState.ReleaseAsync(db, Marker, store.Id, holder);
            return new(ExchangeOutcome.Unanswered, $"{result.Reason}: the answer was lost; run the migration again within 7 days");
        }

        await UnmarkAsync(store.Id, holder);
        return result switch
        {
            { CredentialsRefused: true } => new(ExchangeOutcome.CredentialsRefused, result.Reason),
            { Status: CallStatus.Transient } => new(ExchangeOutcome.TryAgain, result.Reason),
            { Reason: "invalid_grant" or "unauthorized_401" } => new(ExchangeOutcome.Uninstalled, result.Reason),
            _ => new(ExchangeOutcome.Refused, result.Reason),
        };
    }

    // The marker is the claim: committed in one statement, with a lease, before the request is sent, and only while no
    // other process holds one (a second `migrate-expiring` running at once gets Busy). Returns the token to send.
    private async Task<string?> ClaimAsync(ExchangeCandidate store, string holder)
    {
        var now = time.GetUtcNow();
        // Not cancelled once begun: a marker that the server committed is always known to this process, which then ends its lease.
        await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
        return await connection.ReadRowOrDefaultAsync<string>(new CommandDefinition(
            Sql.Claim, new { store.Id, Now = now, LeaseUntil = now + settings.LeaseLength, Holder = holder }));
    }

    private async Task<ExchangeResult> WhyNotClaimedAsync(ExchangeCandidate store)
    {
        await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
        var row = await connection.ReadRowOrDefaultAsync<(bool Expiring, DateTimeOffset? LeasedUntil)?>(
            new CommandDefinition(Sql.WhyNotClaimed, new { store.Id, Now = time.GetUtcNow() }));
        return row switch
        {
            { Expiring: true } => new(ExchangeOutcome.AlreadyMigrated),
            { LeasedUntil: { } until } => new(ExchangeOutcome.Busy,
                $"being migrated by another process (or by one that stopped mid-call: its claim ends at {until:HH:mm:ss} UTC)"),
            _ => new(ExchangeOutcome.Skipped, "deactivated, or its token changed meanwhile"),
        };
    }

    private async Task<ExchangeResult> StoreAsync(ExchangeCandidate store, string old, string holder, TokenPair pair)
    {
        var now = time.GetUtcNow();
        var parameters = new
        {
            store.Id, pair.AccessToken, pair.RefreshToken, Old = old, ExpiresAt = now + pair.ExpiresIn,
            RefreshExpiresAt = now + (pair.RefreshExpiresIn ?? TimeSpan.FromDays(90)), Now = now, Holder = holder,
        };
        return await writer.WriteAsync(Sql.Store, parameters, now + settings.CycleBudget, "Shopify", new DueAccount(store.Id, store.ShopDomain)) switch
        {
            WriteResult.Stored => new(ExchangeOutcome.Migrated),
            WriteResult.Superseded => new(ExchangeOutcome.Skipped, "superseded: a new token was stored meanwhile"),
            _ => new(ExchangeOutcome.Unanswered, "received_but_not_stored: run the migration again within 7 days"),
        };
    }

    private async Task UnmarkAsync(string id, string holder)
    {
        await using var connection = await db.OpenConnectionAsync();
        await connection.ExecuteAsync(Sql.Unmark, new { Id = id, Holder = holder });
    }

    private static partial class Log
    {
        [LoggerMessage(501, LogLevel.Debug, "Shopify store {AccountId}: token exchange sent")]
        public static partial void Sent(ILogger logger, string accountId);
    }
}
