using Microsoft.Extensions.DependencyInjection;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;

namespace TokenRefresh.Platforms.Etsy;

/// <summary>Etsy for the shared refresh mechanism: the etsy_users table, its token endpoint, one rate limit and daily quota for the whole API key, shared by every replica.</summary>
internal sealed class EtsyPlatform(
    EtsyClient client, AppTables tables, [FromKeyedServices("etsy")] SharedRateLimit rateLimit, EtsySettings settings, TimeProvider time) : IRefreshTokenPlatform
{
    public static readonly PlatformInfo Description = new("etsy", "Etsy", "Etsy", null, Outcome.Refreshed, EtsyRegistration.User);

    // Keyed by user_id in the original service's schema; the key is read from the catalog, whatever its name.
    public const string UsersTable = "etsy_users";

    private static readonly TokenTable EtsyUsers = new(UsersTable, LookupColumn: null, LabelColumn: null, ActiveColumn: null);

    /// <summary>What refreshing needs of etsy_users: the refresh token and expiry read, the pair and expiry written.</summary>
    public static readonly Need[] Columns =
    [
        new("access_token", Read: false, Written: true), new("refresh_token", Written: true), new("token_expires_at", Written: true),
        new("updated_at", Read: false, Written: true),
    ];

    public PlatformInfo Info { get; } = Description with { LaneCap = settings.MaxConcurrency };

    public TokenTable Table => EtsyUsers;

    // Etsy says nothing of the refresh token's life: 90 days from the refresh that issued it, i.e. the last success.
    public RefreshTokenLife RefreshToken { get; } = new(Rotates: true, TimeSpan.FromDays(90), EndColumn: null);

    public TimeSpan Margin => settings.RefreshMargin;

    public TimeSpan TokenLifetime => EtsyClient.DocumentedLifetime;

    public TimeSpan AssumedLifetime => EtsyClient.AssumedLifetime;

    public string CredentialSettings => "ETSY_CLIENT_ID and ETSY_CLIENT_SECRET";

    public SharedRateLimit? RateLimit => rateLimit;

    public DailyQuotaWarning? DailyQuota { get; } = new("ETSY_QUOTA_WARN_PERCENT", settings.QuotaWarnPercent, EtsyClient.Quota);

    public async Task<TableShape?> ShapeAsync(bool readOnly, CancellationToken cancellationToken) =>
        await tables.ReadAsync(EtsyUsers.Name, readOnly ? Need.ReadOnly(Columns) : Columns, [], cancellationToken);

    public string? Problem(string? label) => null;

    public string? CallableSql(string alias) => null;

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
