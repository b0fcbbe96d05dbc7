using TokenRefresh.OAuth;

namespace TokenRefresh.Platforms.Etsy;

/// <summary>Etsy's OAuth token endpoint (CONTRACTS.md, "Refresh an access token").</summary>
internal sealed class EtsyClient(HttpClient http, EtsySettings settings, TokenRefreshMetrics metrics, TimeProvider time)
{
    /// <summary>Where Etsy gives its daily quota per API key, on every answer.</summary>
    public static readonly QuotaHeaders Quota = new("x-limit-per-day", "x-remaining-today");

    /// <summary>Taken when Etsy omits or garbles expires_in: half the documented hour, so the token is refreshed early rather than late.</summary>
    public static readonly TimeSpan AssumedLifetime = TimeSpan.FromMinutes(30);

    /// <summary>An access token's life as Etsy documents it.</summary>
    public static readonly TimeSpan DocumentedLifetime = TimeSpan.FromHours(1);

    private static readonly TimeSpan LongestPlausibleLifetime = TimeSpan.FromDays(1);

    public async Task<CallResult<TokenPair>> RefreshAsync(string refreshToken, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v3/public/oauth/token")
        {
            Content = new FormUrlEncodedContent(
            [
                new("grant_type", "refresh_token"),
                new("client_id", settings.ClientId),
                new("refresh_token", refreshToken),
            ]),
        };

        // Etsy's token endpoint may check the shared secret too (unconfirmed): send it as on every API call.
        request.Headers.Add("x-api-key", $"{settings.ClientId}:{settings.ClientSecret}");

        var started = time.GetTimestamp();
        var result = await PlatformHttp.CallAsync(http, request, Classify, cancellationToken, Quota);
        metrics.PlatformCall("Etsy", "refresh", result.Status, time.GetElapsedTime(started));
        return result;
    }

    internal static CallResult<TokenPair> Classify(PlatformResponse response)
    {
        if (response.Code == 200)
        {
            return response.Json is { } root && TokenPair.Parse(root, AssumedLifetime, LongestPlausibleLifetime) is { } pair
                ? new CallResult<TokenPair>(CallStatus.Ok, pair)
                : CallResult<TokenPair>.Transient("malformed_response", outcomeUnknown: true); // a 200: Etsy may well have rotated
        }

        if (PlatformHttp.Transient<TokenPair>(response) is { } transient)
        {
            return transient;
        }

        // Classify on the OAuth error code, never on the description, whose text varies.
        return response.OAuthError switch
        {
            "invalid_grant" => CallResult<TokenPair>.Permanent("invalid_grant"),
            "invalid_client" => CallResult<TokenPair>.Permanent("invalid_client"),
            _ when response.Code == 403 => CallResult<TokenPair>.Permanent("forbidden"),
            { } error when PlatformHttp.IsPlainErrorCode(error) =>
                CallResult<TokenPair>.Permanent($"http_{response.Code}_{error}"),
            _ => CallResult<TokenPair>.Permanent($"http_{response.Code}"),
        };
    }
}
