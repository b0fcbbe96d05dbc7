using System.Net;
using System.Text.Json;

namespace TokenRefresh.Tests;

public sealed class ClassificationTests
{
    private static PlatformResponse Response(int status, string body, TimeSpan? retryAfter = null) =>
        new((HttpStatusCode)status, body, retryAfter);

    [Fact]
    public void Etsy_Ok_ReturnsThePairAndItsLifetime()
    {
        var r = EtsyClient.Classify(Response(200, """{"access_token":"1.a","token_type":"Bearer","expires_in":3600,"refresh_token":"1.r"}"""));

        Assert.Equal(CallStatus.Ok, r.Status);
        Assert.Equal("1.a", r.Value!.AccessToken);
        Assert.Equal("1.r", r.Value.RefreshToken);
        Assert.Equal(TimeSpan.FromHours(1), r.Value.ExpiresIn);
        Assert.False(r.Value.LifetimeAssumed);
    }

    [Theory]
    [InlineData(400, """{"error":"invalid_grant","error_description":"refresh_token is revoked"}""", CallStatus.Permanent, "invalid_grant")]
    [InlineData(400, """{"error":"invalid_grant","error_description":"something else entirely"}""", CallStatus.Permanent, "invalid_grant")]
    [InlineData(401, """{"error":"invalid_client","error_description":"bad"}""", CallStatus.Permanent, "invalid_client")]
    [InlineData(400, """{"error":"invalid_client"}""", CallStatus.Permanent, "invalid_client")]
    [InlineData(403, """{"error":"Shared secret is required in x-api-key header."}""", CallStatus.Permanent, "forbidden")]
    [InlineData(400, """{"error":"unsupported_grant_type"}""", CallStatus.Permanent, "http_400_unsupported_grant_type")]
    [InlineData(400, "<html>bad</html>", CallStatus.Permanent, "http_400")]
    [InlineData(500, """{"error":"Server Error"}""", CallStatus.Transient, "server_error_500")]
    [InlineData(503, "", CallStatus.Transient, "server_error_503")]
    [InlineData(429, "", CallStatus.Transient, "rate_limited")]
    [InlineData(200, "<html>oops</html>", CallStatus.Transient, "malformed_response")]
    [InlineData(200, """{"access_token":"1.a","tok""", CallStatus.Transient, "malformed_response")]
    [InlineData(200, """{"access_token":"1.a","expires_in":3600}""", CallStatus.Transient, "malformed_response")]
    [InlineData(200, """{"access_token":"","refresh_token":"1.r","expires_in":3600}""", CallStatus.Transient, "malformed_response")]
    [InlineData(200, """["not","an","object"]""", CallStatus.Transient, "malformed_response")]
    public void Etsy_ErrorResponses_AreClassifiedOnTheErrorCode(int status, string body, CallStatus expected, string reason)
    {
        var r = EtsyClient.Classify(Response(status, body));

        Assert.Equal(expected, r.Status);
        Assert.Equal(reason, r.Reason);
    }

    [Fact]
    public void Etsy_RateLimited_KeepsRetryAfter()
    {
        var r = EtsyClient.Classify(Response(429, "", TimeSpan.FromSeconds(7)));

        Assert.Equal(TimeSpan.FromSeconds(7), r.RetryAfter);
    }

    [Theory]
    [InlineData("")]
    [InlineData(""","expires_in":null""")]
    [InlineData(",\"expires_in\":\"3600\"")]
    [InlineData(""","expires_in":0""")]
    [InlineData(""","expires_in":-30""")]
    [InlineData(""","expires_in":315360000""")]
    public void TokenPair_MissingOrAbsurdExpiresIn_AssumesTheConservativeLifetime(string expiresIn)
    {
        var root = JsonDocument.Parse($$"""{"access_token":"a","refresh_token":"r"{{expiresIn}}}""").RootElement;

        var pair = TokenPair.Parse(root, TimeSpan.FromMinutes(30), TimeSpan.FromDays(1))!;

        Assert.Equal(TimeSpan.FromMinutes(30), pair.ExpiresIn);
        Assert.True(pair.LifetimeAssumed);
    }

    [Fact]
    public void TokenPair_ToString_NeverShowsTheTokens()
    {
        var pair = new TokenPair("access-secret", "refresh-secret", TimeSpan.FromHours(1), false);

        Assert.DoesNotContain("secret", pair.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(401, """{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}""", CallStatus.Rejected, "unauthorized_401")]
    [InlineData(402, """{"errors":"Unavailable Shop"}""", CallStatus.Permanent, "shop_unavailable_402")]
    [InlineData(403, """{"errors":"User does not have access"}""", CallStatus.Permanent, "forbidden_403")]
    [InlineData(404, """{"errors":"Not Found"}""", CallStatus.Permanent, "not_found_404")]
    [InlineData(423, """{"errors":"This shop is unavailable"}""", CallStatus.Permanent, "shop_locked_423")]
    [InlineData(429, "", CallStatus.Transient, "rate_limited")]
    [InlineData(500, """{"errors":"An unexpected error occurred"}""", CallStatus.Transient, "server_error_500")]
    [InlineData(502, "", CallStatus.Transient, "server_error_502")]
    [InlineData(200, """{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}],"extensions":{"cost":{}}}""", CallStatus.Transient, "throttled")]
    [InlineData(200, """{"errors":[{"message":"Shop inactive","extensions":{"code":"SHOP_INACTIVE"}}]}""", CallStatus.Permanent, "shop_inactive")]
    [InlineData(200, """{"errors":[{"message":"Oops","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}""", CallStatus.Transient, "internal_server_error")]
    [InlineData(200, """{"data":{"shopp":{}}}""", CallStatus.Transient, "malformed_response")]
    [InlineData(200, "<html>", CallStatus.Transient, "malformed_response")]
    [InlineData(200, """{"data":{"shop":{"name":"My Shop"}}}""", CallStatus.Ok, null)]
    // Shopify refusing a non-expiring offline token (CONTRACTS.md): not the token being invalid, so never a deactivation.
    [InlineData(403, """{"errors":"Non-expiring access tokens are no longer accepted for the Admin API. Start using expiring offline tokens."}""", CallStatus.Permanent, "non_expiring_token_refused")]
    [InlineData(401, """{"errors":"Non-expiring access tokens are no longer accepted."}""", CallStatus.Permanent, "non_expiring_token_refused")]
    [InlineData(403, """{"errors":["Non expiring offline tokens are not supported for this app"]}""", CallStatus.Permanent, "non_expiring_token_refused")]
    [InlineData(200, """{"errors":[{"message":"NonExpiring tokens are no longer accepted","extensions":{"code":"ACCESS_DENIED"}}]}""", CallStatus.Permanent, "non_expiring_token_refused")]
    [InlineData(500, """{"errors":"Non-expiring tokens: an unexpected error occurred"}""", CallStatus.Transient, "server_error_500")]
    public void Shopify_OnlyA401RejectsTheToken(int status, string body, CallStatus expected, string? reason)
    {
        var r = ShopifyClient.Classify(Response(status, body));

        Assert.Equal(expected, r.Status);
        Assert.Equal(reason, r.Reason);
    }

    [Theory]
    [InlineData(403, """{"errors":"Non-expiring access tokens are no longer accepted for the Admin API. Start using expiring offline tokens."}""", "non_expiring_token_refused")]
    [InlineData(400, """{"error":"invalid_grant","error_description":"The subject token is invalid"}""", "invalid_grant")]
    [InlineData(401, """{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}""", "unauthorized_401")]
    [InlineData(402, """{"errors":"Unavailable Shop"}""", "shop_unavailable_402")]
    public void Shopify_TokenEndpointRefusals_KeepWhyForTheMigration(int status, string body, string reason)
    {
        var r = ShopifyClient.ClassifyToken(Response(status, body));

        Assert.Equal((CallStatus.Permanent, reason), (r.Status, r.Reason));
    }

    [Theory]
    [InlineData("https://{shop}", true)]
    [InlineData("https://{shop}:8443", true)]
    [InlineData("https://{shop}/prefix", true)]
    [InlineData("http://127.0.0.1:9000/shopify/{shop}", false)]
    [InlineData("https://egress-proxy.internal/{shop}", false)]
    [InlineData("https://{shop}@egress-proxy.internal", false)]
    [InlineData("https://egress-proxy.internal#{shop}", false)]
    [InlineData("http://[::1]:9000/shopify/{shop}", false)]
    public void Shopify_ConnectionsClosedAfterEachCall_OnlyWhenEachStoreIsItsOwnHost(string template, bool hostPerStore) =>
        Assert.Equal(hostPerStore, ShopifyClient.HostPerStore(template));
}
