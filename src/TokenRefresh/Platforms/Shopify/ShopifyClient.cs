using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using TokenRefresh.OAuth;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>Shopify's Admin GraphQL API, used for the cheapest call that proves a token works (CONTRACTS.md).</summary>
internal sealed class ShopifyClient(HttpClient http, ShopifySettings settings, TokenRefreshMetrics metrics, TimeProvider time)
{
    private readonly bool _hostPerStore = HostPerStore(settings.ApiBaseUrl);

    private const string ShopQuery = """{"query":"{ shop { name } }"}""";

    /// <summary>Validates an offline access token; Rejected only on a definitive 401.</summary>
    public async Task<CallResult<string>> ValidateAsync(string shopDomain, string accessToken, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{ShopUrl(shopDomain)}/admin/api/{settings.ApiVersion}/graphql.json")
        {
            Content = new StringContent(ShopQuery, Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
        };
        request.Headers.Add("X-Shopify-Access-Token", accessToken);
        request.Headers.ConnectionClose = _hostPerStore;

        var started = time.GetTimestamp();
        var result = await PlatformHttp.CallAsync(http, request, Classify, cancellationToken);
        metrics.PlatformCall("Shopify", "validate", result.Status, time.GetElapsedTime(started));
        return result;
    }

    /// <summary>
    /// Whether each store is a host of its own (https://{shop}), not a path under one (a proxy, the demo): a store's own
    /// host is called about once a cycle, so its connection is closed with its response rather than idle a minute.
    /// </summary>
    internal static bool HostPerStore(string baseUrlTemplate) =>
        new Uri(baseUrlTemplate.Replace("{shop}", "a.myshopify.com", StringComparison.Ordinal)).IdnHost
        != new Uri(baseUrlTemplate.Replace("{shop}", "b.myshopify.com", StringComparison.Ordinal)).IdnHost;

    /// <summary>Taken when Shopify omits or garbles expires_in: half the documented hour.</summary>
    public static readonly TimeSpan AssumedLifetime = TimeSpan.FromMinutes(30);

    private const string OfflineTokenType = "urn:shopify:params:oauth:token-type:offline-access-token";

    /// <summary>Refreshes an expiring offline token (CONTRACTS.md, "Expiring offline access tokens").</summary>
    public Task<CallResult<TokenPair>> RefreshAsync(string shopDomain, string refreshToken, CancellationToken cancellationToken) =>
        TokenRequestAsync(shopDomain, "refresh", [new("grant_type", "refresh_token"), new("refresh_token", refreshToken)], cancellationToken);

    /// <summary>Exchanges a non-expiring offline token for an expiring pair. Irreversible: the old token is revoked.</summary>
    public Task<CallResult<TokenPair>> ExchangeAsync(string shopDomain, string offlineToken, CancellationToken cancellationToken) =>
        TokenRequestAsync(shopDomain, "exchange",
        [
            new("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            new("subject_token", offlineToken),
            new("subject_token_type", OfflineTokenType),
            new("requested_token_type", OfflineTokenType),
            new("expiring", "1"),
        ], cancellationToken);

    private async Task<CallResult<TokenPair>> TokenRequestAsync(
        string shopDomain, string operation, KeyValuePair<string, string>[] fields, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{ShopUrl(shopDomain)}/admin/oauth/access_token")
        {
            Content = new FormUrlEncodedContent([new("client_id", settings.ApiKey), new("client_secret", settings.ApiSecret), .. fields]),
        };
        request.Headers.ConnectionClose = _hostPerStore;
        var started = time.GetTimestamp();
        var result = await PlatformHttp.CallAsync(http, request, ClassifyToken, cancellationToken);
        metrics.PlatformCall("Shopify", operation, result.Status, time.GetElapsedTime(started));
        return result;
    }

    internal static CallResult<TokenPair> ClassifyToken(PlatformResponse response)
    {
        if (response.Code == 200)
        {
            return response.Json is { } root && TokenPair.Parse(root, AssumedLifetime, TimeSpan.FromDays(1)) is { } pair
                ? new CallResult<TokenPair>(CallStatus.Ok, pair)
                : CallResult<TokenPair>.Transient("malformed_response", outcomeUnknown: true);
        }

        if (PlatformHttp.Transient<TokenPair>(response) is { } transient)
        {
            return transient;
        }

        if (RefusesNonExpiring(response))
        {
            return CallResult<TokenPair>.Permanent(NonExpiringRefused);
        }

        // Classify on the OAuth error code, never on its description; the shop's own state otherwise.
        return response.OAuthError switch
        {
            "invalid_grant" => CallResult<TokenPair>.Permanent("invalid_grant"),
            "invalid_client" => CallResult<TokenPair>.Permanent("invalid_client"),
            { } error when PlatformHttp.IsPlainErrorCode(error) =>
                CallResult<TokenPair>.Permanent($"http_{response.Code}_{error}"),
            _ => CallResult<TokenPair>.Permanent(Reason(response.Code)),
        };
    }

    /// <exception cref="InvalidOperationException">The shop domain breaks the rule: callers never select such a store; this is the last guard.</exception>
    public string ShopUrl(string shopDomain) => ShopDomain.Problem(shopDomain) is null
        ? settings.ApiBaseUrl.Replace("{shop}", shopDomain, StringComparison.Ordinal)
        : throw new InvalidOperationException($"A Shopify call to a store whose {ShopDomain.Rule} was refused.");

    internal static CallResult<string> Classify(PlatformResponse response)
    {
        return response.Code switch
        {
            200 => ClassifyGraphQl(response),
            // Not the store's token being invalid: Shopify wants an expiring one (any wording or status it may use).
            >= 400 and < 500 when RefusesNonExpiring(response) => CallResult<string>.Permanent(NonExpiringRefused),
            401 => new CallResult<string>(CallStatus.Rejected, Reason: Reason(401)),
            // 402, 403, 404, 423 say something about the shop, not the token: report, never deactivate.
            _ => PlatformHttp.Transient<string>(response) ?? CallResult<string>.Permanent(Reason(response.Code)),
        };
    }

    /// <summary>Shopify no longer accepts the store's non-expiring offline token (CONTRACTS.md): the store must move to an expiring one.</summary>
    public const string NonExpiringRefused = "non_expiring_token_refused";

    // "Non-expiring access tokens are no longer accepted for the Admin API..." (its wording may vary).
    private static bool RefusesNonExpiring(PlatformResponse response) =>
        response.Body.Contains("non-expiring", StringComparison.OrdinalIgnoreCase)
        || response.Body.Contains("non expiring", StringComparison.OrdinalIgnoreCase)
        || response.Body.Contains("nonexpiring", StringComparison.OrdinalIgnoreCase);

    private static string Reason(int code) => code switch
    {
        401 => "unauthorized_401",
        402 => "shop_unavailable_402",
        403 => "forbidden_403",
        404 => "not_found_404",
        423 => "shop_locked_423",
        _ => $"http_{code}",
    };

    // GraphQL reports throttling and shop problems as HTTP 200 with an errors array.
    private static CallResult<string> ClassifyGraphQl(PlatformResponse response)
    {
        if (response.Json is not { } root)
        {
            return CallResult<string>.Transient("malformed_response");
        }

        if (root.TryGetProperty("errors", out var errors))
        {
            if (RefusesNonExpiring(response))
            {
                return CallResult<string>.Permanent(NonExpiringRefused);
            }

            var code = FirstErrorCode(errors);
            return code switch
            {
                "THROTTLED" => CallResult<string>.Transient("throttled", ThrottleWait(root)),
                "SHOP_INACTIVE" => CallResult<string>.Permanent("shop_inactive"),
                "INTERNAL_SERVER_ERROR" => CallResult<string>.Transient("internal_server_error"),
                _ => CallResult<string>.Transient("graphql_error"),
            };
        }

        return root.TryGetProperty("data", out var data)
            && data.ValueKind == JsonValueKind.Object
            && data.TryGetProperty("shop", out var shop)
            && shop.ValueKind == JsonValueKind.Object
            && shop.TryGetProperty("name", out var name)
            && name.ValueKind == JsonValueKind.String
            ? new CallResult<string>(CallStatus.Ok, name.GetString())
            : CallResult<string>.Transient("malformed_response");
    }

    // How long until the bucket holds the query's cost again: (requested - available) / restoreRate seconds.
    private static TimeSpan ThrottleWait(JsonElement root)
    {
        try
        {
            var cost = root.GetProperty("extensions").GetProperty("cost");
            var status = cost.GetProperty("throttleStatus");
            var missing = cost.GetProperty("requestedQueryCost").GetDouble() - status.GetProperty("currentlyAvailable").GetDouble();
            var rate = status.GetProperty("restoreRate").GetDouble();
            // Clamped: a garbled figure (a huge cost, a tiny rate) must not overflow or pause a store for ever.
            return missing > 0 && rate > 0 ? PlatformHttp.Wait(Math.Max(1, Math.Ceiling(missing / rate))) ?? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(1);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return TimeSpan.FromSeconds(2);
        }
    }

    private static string? FirstErrorCode(JsonElement errors)
    {
        if (errors.ValueKind != JsonValueKind.Array)
        {
            return null;
        }

        foreach (var error in errors.EnumerateArray())
        {
            if (error.ValueKind == JsonValueKind.Object
                && error.TryGetProperty("extensions", out var extensions)
                && extensions.ValueKind == JsonValueKind.Object
                && extensions.TryGetProperty("code", out var code)
                && code.ValueKind == JsonValueKind.String)
            {
                return code.GetString();
            }
        }

        return null;
    }
}
