using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using TokenRefresh.OAuth;

namespace TokenRefresh.Etsy;

/// <summary>Etsy for the shared OAuth2 refresh mechanism: the etsy_users table, its token endpoint, one pause for the whole API key.</summary>
internal sealed class EtsyPlatform(EtsyClient client, [FromKeyedServices("Etsy")] RateGate gate, IOptions<TokenRefreshOptions> options) : IRefreshTokenPlatform
{
    // Etsy says nothing of the refresh token's life: 90 days from the refresh that issued it, i.e. the last success.
    private static readonly TokenTable EtsyUsers = new(
        Name: "etsy_users",
        KeyKind: "etsy-user",
        KeyColumn: "a.id::text",
        ActiveFilter: "true",
        LabelColumn: null,
        RefreshExpiryColumn: null,
        RefreshTokenExpirySql: "(s.last_success_at + interval '90 days')");

    public string Platform => "Etsy";

    public string StateKey => "etsy";

    public TokenTable Table => EtsyUsers;

    public TimeSpan Margin => options.Value.EtsyRefreshMargin;

    public TimeSpan AssumedLifetime => EtsyClient.AssumedLifetime;

    public RateGate? Gate => gate;

    public Task<bool> IsEnabledAsync(CancellationToken cancellationToken) => Task.FromResult(true);

    public string? Problem(string? label) => null;

    public Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken) =>
        client.RefreshAsync(refreshToken, cancellationToken);
}
