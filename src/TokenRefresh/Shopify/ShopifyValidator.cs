using System.Text.RegularExpressions;
using Dapper;
using Npgsql;

namespace TokenRefresh.Shopify;

/// <summary>Validates the offline token of every active store; deactivates a store only on a definitive 401.</summary>
internal sealed partial class ShopifyValidator(NpgsqlDataSource db, ShopifyClient client, TimeProvider time) : IPlatformRefresher
{
    public string Platform => "Shopify";

    public Outcome SuccessOutcome => Outcome.Validated;

    public async Task<IReadOnlyList<DueAccount>> FindDueAsync(CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT id AS Id, shop_domain AS ShopDomain, (access_token IS NULL OR access_token = '') AS NoToken
            FROM shopify_stores
            WHERE is_active
            ORDER BY id
            """;
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var rows = await connection.QueryAsync<(Guid Id, string? ShopDomain, bool NoToken)>(
            new CommandDefinition(sql, cancellationToken: cancellationToken));
        return rows.Select(r => new DueAccount(r.Id, r.ShopDomain ?? "", Problem(r.ShopDomain, r.NoToken))).ToList();
    }

    public async Task<AccountResult> ProcessAsync(DueAccount account, CancellationToken cancellationToken)
    {
        const string tokenSql = "SELECT access_token FROM shopify_stores WHERE id = @Id AND is_active";
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var token = await connection.QuerySingleOrDefaultAsync<string>(
            new CommandDefinition(tokenSql, new { account.Id }, cancellationToken: cancellationToken));
        if (string.IsNullOrEmpty(token))
        {
            return AccountResult.Skip("no longer active, or its token was removed");
        }

        var result = await client.ValidateAsync(account.Label!, token, cancellationToken);
        return result.Status switch
        {
            CallStatus.Ok => AccountResult.Success(Outcome.Validated),
            CallStatus.Rejected => await DeactivateAsync(connection, account, token, result.Reason!),
            CallStatus.Transient => AccountResult.TransientFailure(result.Reason!),
            _ => AccountResult.PermanentFailure(result.Reason!),
        };
    }

    private async Task<AccountResult> DeactivateAsync(NpgsqlConnection connection, DueAccount account, string rejectedToken, string reason)
    {
        // Only the token that was rejected: if the main application stored a new one meanwhile, the store stays active.
        const string sql = """
            UPDATE shopify_stores
            SET is_active = false, updated_at = @Now
            WHERE id = @Id AND is_active AND access_token = @RejectedToken
            """;
        var changed = await connection.ExecuteAsync(new CommandDefinition(
            sql, new { account.Id, RejectedToken = rejectedToken, Now = time.GetUtcNow() }, cancellationToken: CancellationToken.None));
        return changed == 1
            ? new AccountResult(Outcome.Deactivated, reason)
            : AccountResult.Skip("its token changed while it was being validated");
    }

    private static string? Problem(string? shopDomain, bool noToken) =>
        noToken ? "access_token is NULL or empty"
        : shopDomain is null || !ShopDomainPattern().IsMatch(shopDomain) ? "shop_domain is not a valid host name"
        : null;

    // A host name only: anything else (a path, a port, spaces) must not reach the request URL.
    [GeneratedRegex(@"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", RegexOptions.IgnoreCase)]
    private static partial Regex ShopDomainPattern();
}
