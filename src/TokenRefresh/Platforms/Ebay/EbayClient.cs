using System.Net.Http.Headers;
using System.Text;
using TokenRefresh.OAuth;

namespace TokenRefresh.Platforms.Ebay;

/// <summary>eBay's identity API token endpoint, for a user token's refresh (CONTRACTS.md, "eBay").</summary>
internal sealed class EbayClient(HttpClient http, EbaySettings settings, TokenRefreshMetrics metrics, TimeProvider time)
{
    /// <summary>An access token's life as eBay documents it.</summary>
    public static readonly TimeSpan DocumentedLifetime = TimeSpan.FromHours(2);

    /// <summary>Taken when eBay omits or garbles expires_in: half the documented life.</summary>
    public static readonly TimeSpan AssumedLifetime = TimeSpan.FromHours(1);

    /// <summary>A refresh token's life from the user's consent (refresh_token_expires_in), which no refresh renews.</summary>
    public static readonly TimeSpan RefreshTokenLifetime = TimeSpan.FromSeconds(47_304_000);

    private readonly AuthenticationHeaderValue _credentials =
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{settings.ClientId}:{settings.ClientSecret}")));

    public async Task<CallResult<TokenPair>> RefreshAsync(string refreshToken, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "identity/v1/oauth2/token")
        {
            Content = new FormUrlEncodedContent([new("grant_type", "refresh_token"), new("refresh_token", refreshToken), new("scope", settings.Scopes)]),
        };
        // The app's credentials go in the header alone, never in the body.
        request.Headers.Authorization = _credentials;
        var started = time.GetTimestamp();
        var result = await PlatformHttp.CallAsync(http, request, Classify, cancellationToken);
        metrics.PlatformCall(EbayPlatform.Description.Name, "refresh", result.Status, time.GetElapsedTime(started));
        return result;
    }

    internal static CallResult<TokenPair> Classify(PlatformResponse response)
    {
        if (response.Code == 200)
        {
            // The answer carries no refresh token: the one stored stays valid until its end.
            return response.Json is { } root && TokenPair.Parse(root, AssumedLifetime, TimeSpan.FromDays(1), rotates: false) is { } pair
                ? new CallResult<TokenPair>(CallStatus.Ok, pair)
                : CallResult<TokenPair>.Transient("malformed_response");
        }

        if (PlatformHttp.Transient<TokenPair>(response) is { } transient)
        {
            return transient;
        }

        // Classify on the OAuth error code, never on its description.
        return response.OAuthError switch
        {
            "invalid_grant" => CallResult<TokenPair>.Permanent("invalid_grant"),
            "invalid_client" => CallResult<TokenPair>.Permanent("invalid_client"),
            { } error when PlatformHttp.IsPlainErrorCode(error) =>
                CallResult<TokenPair>.Permanent($"http_{response.Code}_{error}"),
            _ => CallResult<TokenPair>.Permanent($"http_{response.Code}"),
        };
    }
}
