using System.Net;
using Microsoft.Extensions.Configuration;
using TokenRefresh.Platforms.Ebay;

namespace TokenRefresh.Tests;

/// <summary>eBay's answers classified on the OAuth error code, and its settings read only when EBAY_CLIENT_ID is set.</summary>
public sealed class EbayTests
{
    private static PlatformResponse Response(int status, string body) => new((HttpStatusCode)status, body, null);

    private static EbaySettings? Read(params (string Key, string? Value)[] values) =>
        EbaySettings.Read(new SettingsReader(new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => KeyValuePair.Create(v.Key, v.Value))).Build()));

    [Fact]
    public void Ok_WithoutARefreshToken_IsAnAccessTokenOverTheRefreshTokenKept()
    {
        var r = EbayClient.Classify(Response(200, """{"access_token":"v^1.1#a","expires_in":7200,"token_type":"User Access Token"}"""));

        Assert.Equal(CallStatus.Ok, r.Status);
        Assert.Equal(("v^1.1#a", null, TimeSpan.FromHours(2), false), (r.Value!.AccessToken, r.Value.RefreshToken, r.Value.ExpiresIn, r.Value.LifetimeAssumed));
    }

    [Theory]
    [InlineData(400, """{"error":"invalid_grant","error_description":"the provided authorization refresh token is invalid or was issued to another client"}""", CallStatus.Permanent, "invalid_grant")]
    [InlineData(401, """{"error":"invalid_client","error_description":"client authentication failed"}""", CallStatus.Permanent, "invalid_client")]
    [InlineData(400, """{"error":"invalid_scope","error_description":"The requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client"}""", CallStatus.Permanent, "http_400_invalid_scope")]
    [InlineData(400, """{"error":"not an <error> code"}""", CallStatus.Permanent, "http_400")]
    [InlineData(429, "", CallStatus.Transient, "rate_limited")]
    [InlineData(503, "<html>down</html>", CallStatus.Transient, "server_error_503")]
    [InlineData(200, """{"expires_in":7200}""", CallStatus.Transient, "malformed_response")]
    [InlineData(200, "<html>oops</html>", CallStatus.Transient, "malformed_response")]
    public void Errors_AreClassifiedOnTheErrorCode_NeverItsDescription(int status, string body, CallStatus expected, string reason)
    {
        var r = EbayClient.Classify(Response(status, body));

        Assert.Equal((expected, reason), (r.Status, r.Reason));
    }

    [Fact]
    public void Ok_WithAMissingExpiresIn_AssumesHalfTheDocumentedLife()
    {
        var r = EbayClient.Classify(Response(200, """{"access_token":"v^1.1#a"}"""));

        Assert.Equal((TimeSpan.FromHours(1), true), (r.Value!.ExpiresIn, r.Value.LifetimeAssumed));
    }

    [Fact]
    public void Settings_WithoutClientId_EbayIsOff()
    {
        Assert.Null(Read(("EBAY_CLIENT_SECRET", "cert-secret-value")));
    }

    [Theory]
    [InlineData("EBAY_CLIENT_SECRET")]
    [InlineData("EBAY_SCOPES")]
    public void Settings_WithClientId_AMissingCompanionIsNamed_NotItsValue(string missing)
    {
        (string, string?)[] all = [("EBAY_CLIENT_ID", "app-id"), ("EBAY_CLIENT_SECRET", "cert-secret-value"), ("EBAY_SCOPES", "https://api.ebay.com/oauth/api_scope")];

        var error = Assert.Throws<SettingsException>(() => Read([.. all.Where(s => s.Item1 != missing)]));

        Assert.Equal($"{missing} is required when EBAY_CLIENT_ID is set.", error.Message);
        Assert.DoesNotContain("cert-secret-value", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Settings_ScopesAreSentSingleSpaced_AndTheDefaultsAreTheDocumentedOnes()
    {
        var s = Read(("EBAY_CLIENT_ID", "app-id"), ("EBAY_CLIENT_SECRET", "cert-secret-value"), ("EBAY_SCOPES", "  scope/a   scope/b "))!;

        Assert.Equal("scope/a scope/b", s.Scopes);
        Assert.Equal((new Uri("https://api.ebay.com/"), TimeSpan.FromMinutes(10), TimeSpan.FromDays(30)), (s.ApiBaseUrl, s.RefreshMargin, s.ReauthAhead));
        Assert.Equal("EbaySettings", s.ToString());
    }

    [Theory]
    [InlineData("EBAY_REAUTH_AHEAD_DAYS", "0")]
    [InlineData("EBAY_REFRESH_MARGIN_MINUTES", "ten")]
    [InlineData("EBAY_API_BASE_URL", "http://api.ebay.com")]
    public void Settings_AMalformedValue_NamesTheSetting(string key, string value)
    {
        var error = Assert.Throws<SettingsException>(() =>
            Read(("EBAY_CLIENT_ID", "app-id"), ("EBAY_CLIENT_SECRET", "cert-secret-value"), ("EBAY_SCOPES", "scope/a"), (key, value)));

        Assert.StartsWith(key, error.Message, StringComparison.Ordinal);
    }
}
