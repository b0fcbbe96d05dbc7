using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;

namespace TokenRefresh.Etsy;

/// <summary>Etsy for the shared OAuth2 refresh mechanism: the etsy_users table, its token endpoint, one rate limit for the whole API key, shared by every replica.</summary>
internal sealed class EtsyPlatform(
    EtsyClient client, AppTables tables, [FromKeyedServices("Etsy")] SharedRateLimit rateLimit, IOptions<TokenRefreshOptions> options, TimeProvider time) : IRefreshTokenPlatform
{
    // Keyed by user_id in the original service's schema; the key is read from the catalog, whatever its name.
    // Etsy says nothing of the refresh token's life: 90 days from the refresh that issued it, i.e. the last success.
    private static readonly TokenTable EtsyUsers = new(
        Name: "etsy_users", KeyKind: "etsy-user", LookupColumn: null, LabelColumn: null, ActiveColumn: null, RefreshExpiryColumn: null);

    private static readonly Need[] Columns =
    [
        new("access_token", Read: false, Written: true), new("refresh_token", Written: true), new("token_expires_at", Written: true),
        new("updated_at", Read: false, Written: true),
    ];

    public string Platform => "Etsy";

    public string StateKey => "etsy";

    public string CredentialSettings => "ETSY_CLIENT_ID and ETSY_CLIENT_SECRET";

    public TokenTable Table => EtsyUsers;

    public TimeSpan Margin => options.Value.EtsyRefreshMargin;

    public TimeSpan AssumedLifetime => EtsyClient.AssumedLifetime;

    public string Group => "Etsy";

    public SharedRateLimit? RateLimit => rateLimit;

    public async Task<TableShape?> ShapeAsync(CancellationToken cancellationToken) => await tables.ReadAsync(EtsyUsers.Name, Columns, [], cancellationToken);

    public string? Problem(string? label) => null;

    public string? CallableSql(string alias) => null;

    public TimeSpan TokenLifetime => EtsyClient.DocumentedLifetime;

    public async Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken)
    {
        var result = await client.RefreshAsync(refreshToken, cancellationToken);
        if (result.Quota is { } quota)
        {
            rateLimit.SawQuota(quota.PerDay, quota.Remaining, time.GetUtcNow());
        }

        return result;
    }
}
