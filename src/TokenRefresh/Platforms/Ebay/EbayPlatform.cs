using TokenRefresh.OAuth;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;

namespace TokenRefresh.Platforms.Ebay;

/// <summary>
/// eBay's user tokens for the shared refresh mechanism: the ebay_users table, the identity API's token endpoint, a
/// refresh token that does not rotate and ends on a day the main application stores, announced ahead of it.
/// </summary>
internal sealed class EbayPlatform(EbayClient client, AppTables tables, EbaySettings settings) : IRefreshTokenPlatform
{
    public const string UsersTable = "ebay_users";

    // Optional: the original service had no eBay, so a missing table stops eBay alone.
    public static readonly PlatformInfo Description = new("ebay", "eBay", "eBay", null, Outcome.Refreshed, EbayRegistration.User, Optional: true);

    private static readonly TokenTable EbayUsers = new(UsersTable, LookupColumn: null, LabelColumn: null, ActiveColumn: null);

    /// <summary>What refreshing needs of ebay_users: the refresh token and both ends read, the access token and its end written.</summary>
    public static readonly Need[] Columns =
    [
        new("access_token", Read: false, Written: true), new("refresh_token"), new("token_expires_at", Written: true),
        new("refresh_token_expires_at"), new("updated_at", Read: false, Written: true),
    ];

    public PlatformInfo Info => Description;

    public TokenTable Table => EbayUsers;

    public RefreshTokenLife RefreshToken { get; } = new(Rotates: false, EbayClient.RefreshTokenLifetime, "refresh_token_expires_at", settings.ReauthAhead);

    public TimeSpan Margin => settings.RefreshMargin;

    public TimeSpan TokenLifetime => EbayClient.DocumentedLifetime;

    public TimeSpan AssumedLifetime => EbayClient.AssumedLifetime;

    public string CredentialSettings => "EBAY_CLIENT_ID and EBAY_CLIENT_SECRET";

    public SharedRateLimit? RateLimit => null;

    public DailyQuotaWarning? DailyQuota => null;

    public async Task<TableShape?> ShapeAsync(bool readOnly, CancellationToken cancellationToken) =>
        await tables.ReadAsync(UsersTable, readOnly ? Need.ReadOnly(Columns) : Columns, [], cancellationToken);

    public string? Problem(string? label) => null;

    public string? CallableSql(string alias) => null;

    public Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken) =>
        client.RefreshAsync(refreshToken, cancellationToken);
}
