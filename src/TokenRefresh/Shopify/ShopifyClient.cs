using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace TokenRefresh.Shopify;

/// <summary>Shopify's Admin GraphQL API, used for the cheapest call that proves a token works (CONTRACTS.md).</summary>
internal sealed class ShopifyClient(HttpClient http, IOptions<TokenRefreshOptions> options)
{
    private const string ShopQuery = """{"query":"{ shop { name } }"}""";

    /// <summary>Validates an offline access token; Rejected only on a definitive 401.</summary>
    public async Task<CallResult<string>> ValidateAsync(string shopDomain, string accessToken, CancellationToken cancellationToken)
    {
        var o = options.Value;
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{ShopUrl(shopDomain)}/admin/api/{o.ShopifyApiVersion}/graphql.json")
        {
            Content = new StringContent(ShopQuery, Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
        };
        request.Headers.Add("X-Shopify-Access-Token", accessToken);

        var (response, failure) = await PlatformHttp.SendAsync(http, request, cancellationToken);
        return response is null ? CallResult<string>.From(failure!) : Classify(response);
    }

    public string ShopUrl(string shopDomain) => options.Value.ShopifyApiBaseUrl.Replace("{shop}", shopDomain, StringComparison.Ordinal);

    internal static CallResult<string> Classify(PlatformResponse response)
    {
        switch (response.Code)
        {
            case 200:
                return ClassifyGraphQl(response);
            case 401:
                return new CallResult<string>(CallStatus.Rejected, Reason: "unauthorized_401");
            // These say something about the shop, not the token: report, never deactivate.
            case 402:
                return CallResult<string>.Permanent("shop_unavailable_402");
            case 403:
                return CallResult<string>.Permanent("forbidden_403");
            case 404:
                return CallResult<string>.Permanent("not_found_404");
            case 423:
                return CallResult<string>.Permanent("shop_locked_423");
        }

        return PlatformHttp.Transient<string>(response) ?? CallResult<string>.Permanent($"http_{response.Code}");
    }

    // GraphQL reports throttling and shop problems as HTTP 200 with an errors array.
    private static CallResult<string> ClassifyGraphQl(PlatformResponse response)
    {
        if (response.Json is not { } root)
        {
            return CallResult<string>.Transient("malformed_response");
        }

        if (root.TryGetProperty("errors", out var errors))
        {
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
            return missing > 0 && rate > 0 ? TimeSpan.FromSeconds(Math.Ceiling(missing / rate)) : TimeSpan.FromSeconds(1);
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
