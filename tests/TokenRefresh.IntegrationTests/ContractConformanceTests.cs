using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// The fakes against CONTRACTS.md, row by row: every status and body the contract lists for Shopify's Admin API
/// and Etsy's token endpoint is what the fake answers, at the production URLs. The contract is read from
/// ../shared/CONTRACTS.md when it is there (and must equal the copy kept with the fakes), else from that copy.
/// </summary>
public sealed partial class ContractConformanceTests : HarnessTests
{
    private static readonly string Contract = ReadContract();

    private static string EtsySection => Section("## Etsy Open API v3", "## Shopify Admin API");

    private static string ShopifySection => Section("## Shopify Admin API", "## What good token services learned");

    private static string Section(string from, string to) =>
        Contract[Contract.IndexOf(from, StringComparison.Ordinal)..Contract.IndexOf(to, StringComparison.Ordinal)];

    private static string ReadContract()
    {
        var copy = File.ReadAllText(Repo.File("tests", "TokenRefresh.FakePlatforms", "CONTRACTS.md"));
        var shared = Path.Combine(Repo.Root, "..", "shared", "CONTRACTS.md");
        if (File.Exists(shared) && File.ReadAllText(shared) != copy)
        {
            throw new InvalidOperationException("tests/TokenRefresh.FakePlatforms/CONTRACTS.md differs from ../shared/CONTRACTS.md: copy it, then make the fakes follow it.");
        }

        return copy;
    }

    // Which fake fault plays each row of the contract's Shopify status table (a row without one fails the test).
    private static readonly Dictionary<string, FakeFault> ShopifyRows = new()
    {
        ["token invalid, revoked, or app uninstalled"] = FakeFault.Unauthorized,
        ["frozen / unpaid shop"] = FakeFault.PaymentRequired,
        ["shop marked fraudulent / no access"] = FakeFault.Forbidden,
        ["not found"] = FakeFault.NotFound,
        ["locked shop"] = FakeFault.Locked,
        // Played by the fake's cut-off itself (NonExpiringCutoff), not by a fault.
        ["a non-expiring offline token where Shopify requires an expiring one (public apps created from 2026-04-01 today; all public apps from 2027-01-01)"] =
            FakeFault.NonExpiringRefused,
        ["rate limited"] = FakeFault.RateLimited,
        ["server error"] = FakeFault.ServerError,
    };

    private HttpClient Client()
    {
        var handler = new SocketsHttpHandler { AllowAutoRedirect = false };
        H.Network.Apply(handler);
        return new HttpClient(handler);
    }

    [Fact]
    public async Task Shopify_EveryRowOfTheStatusTable_IsWhatTheFakeAnswers()
    {
        var rows = ShopifyTableRow().Matches(ShopifySection).ToList();
        Assert.Equal(ShopifyRows.Count, rows.Count);
        using var http = Client();
        foreach (var row in rows)
        {
            var (name, status, body) = (row.Groups["case"].Value.Trim(), row.Groups["status"].Value, row.Groups["body"].Value);
            Assert.True(ShopifyRows.TryGetValue(name, out var fault), $"no fake fault plays the contract's row '{name}'");
            var shop = $"row-{rows.IndexOf(row)}.myshopify.com";
            H.Fake.Shopify.AddStore(shop, "shpat_row");
            if (fault == FakeFault.NonExpiringRefused)
            {
                H.Fake.Shopify.NonExpiringCutoff = DateTimeOffset.UtcNow.AddSeconds(-1);
            }
            else
            {
                H.Fake.Shopify.SetFault(shop, fault, times: 1);
            }

            using var response = await http.SendAsync(ValidationRequest(shop, "shpat_row"));
            var answer = await response.Content.ReadAsStringAsync();
            H.Fake.Shopify.NonExpiringCutoff = null;

            Assert.True(status == "5xx" ? (int)response.StatusCode >= 500 : ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture) == status,
                $"{name}: the contract says {status}, the fake answered {(int)response.StatusCode}");
            if (body.StartsWith("Retry-After: ", StringComparison.Ordinal))
            {
                Assert.Equal(body["Retry-After: ".Length..], response.Headers.GetValues("Retry-After").Single());
            }
            else
            {
                Assert.Equal(body, answer);
            }
        }
    }

    [Fact]
    public async Task Shopify_TheSuccessAndGraphQlErrorBodies_HaveTheContractsShape()
    {
        using var http = Client();
        H.Fake.Shopify.AddStore("fine.myshopify.com", "shpat_fine");
        using var ok = await http.SendAsync(ValidationRequest("fine.myshopify.com", "shpat_fine"));
        AssertSameShape(ContractJson(@"- 200 body: `(\{""data"".*?)`"), await ok.Content.ReadAsStringAsync());

        foreach (var (fault, code) in new[] { (FakeFault.Throttled, "THROTTLED"), (FakeFault.ShopInactive, "SHOP_INACTIVE") })
        {
            H.Fake.Shopify.SetFault("fine.myshopify.com", fault, times: 1);
            using var response = await http.SendAsync(ValidationRequest("fine.myshopify.com", "shpat_fine"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal(code, doc.RootElement.GetProperty("errors")[0].GetProperty("extensions").GetProperty("code").GetString());
            Assert.Contains(code, Contract, StringComparison.Ordinal);
        }

        var (access, refresh) = H.Fake.Shopify.AddExpiringStore("exp.myshopify.com");
        using var refreshed = await http.PostAsync("https://exp.myshopify.com/admin/oauth/access_token", new FormUrlEncodedContent(
        [
            new("client_id", H.Fake.Shopify.ApiKey), new("client_secret", H.Fake.Shopify.ApiSecret), new("grant_type", "refresh_token"), new("refresh_token", refresh),
        ]));
        Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
        AssertSameShape(ContractJson(@"- 200 body: `(\{""access_token"":""shpat_.*?)`"), await refreshed.Content.ReadAsStringAsync());
        Assert.NotEqual(access, H.Fake.Shopify.CurrentAccessToken("exp.myshopify.com"));

        // "Bad refresh token: 400 {"error":"invalid_grant",...}": a refresh token Shopify never issued.
        Assert.Contains("Bad refresh token: `400 {\"error\":\"invalid_grant\"", ShopifySection, StringComparison.Ordinal);
        using var reused = await http.PostAsync("https://exp.myshopify.com/admin/oauth/access_token", new FormUrlEncodedContent(
        [
            new("client_id", H.Fake.Shopify.ApiKey), new("client_secret", H.Fake.Shopify.ApiSecret), new("grant_type", "refresh_token"), new("refresh_token", "shprt_never_issued"),
        ]));
        Assert.Equal(HttpStatusCode.BadRequest, reused.StatusCode);
        using var reusedBody = JsonDocument.Parse(await reused.Content.ReadAsStringAsync());
        Assert.Equal("invalid_grant", reusedBody.RootElement.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Etsy_EveryErrorTheContractLists_IsWhatTheFakeAnswers()
    {
        var errors = EtsyErrorLine().Matches(EtsySection).ToList();
        Assert.Equal(5, errors.Count);
        using var http = Client();
        foreach (var line in errors)
        {
            var statuses = line.Groups["status"].Value.Split('/');
            var body = line.Groups["body"].Value;
            using var contractBody = JsonDocument.Parse(body.Replace(", ...", "", StringComparison.Ordinal));
            var error = contractBody.RootElement.GetProperty("error").GetString()!;
            var refresh = H.Fake.Etsy.AddAccount(42);
            var withKey = true;
            switch (error)
            {
                case "invalid_grant": H.Fake.Etsy.Revoke(refresh); break;
                case "invalid_client": H.Fake.Etsy.SetFault(refresh, FakeFault.InvalidClient); break;
                case "Server Error": H.Fake.Etsy.SetFault(refresh, FakeFault.ServerError); break;
                case "invalid_token": H.Fake.Etsy.SetFault(refresh, FakeFault.Unauthorized); break;
                case "Shared secret is required in x-api-key header.": withKey = false; break;
                default: Assert.Fail($"no fake behaviour plays the contract's Etsy error '{error}'"); break;
            }

            using var response = await http.SendAsync(EtsyRefresh(refresh, withKey));
            var answer = await response.Content.ReadAsStringAsync();

            Assert.Contains(((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture), statuses);
            using var fakeBody = JsonDocument.Parse(answer);
            Assert.Equal(error, fakeBody.RootElement.GetProperty("error").GetString());
            foreach (var property in contractBody.RootElement.EnumerateObject())
            {
                Assert.True(fakeBody.RootElement.TryGetProperty(property.Name, out var value) && (error != "invalid_grant" || value.GetString() == property.Value.GetString()),
                    $"{error}: the contract's body has {property.Name}, the fake's is {answer}");
            }
        }
    }

    [Fact]
    public async Task Etsy_TheTokenResponse_HasTheContractsShape_AndIsStrictAboutTheRequest()
    {
        using var http = Client();
        var refresh = H.Fake.Etsy.AddAccount(12345678);
        using var ok = await http.SendAsync(EtsyRefresh(refresh, withKey: true));
        var body = await ok.Content.ReadAsStringAsync();
        AssertSameShape(ContractJson(@"- 200 body:\s+`(\{""access_token"":""12345678.*?)`"), body);
        using var doc = JsonDocument.Parse(body);
        Assert.Equal("Bearer", doc.RootElement.GetProperty("token_type").GetString());
        Assert.Equal(3600, doc.RootElement.GetProperty("expires_in").GetInt32());
        Assert.StartsWith("12345678.", doc.RootElement.GetProperty("access_token").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("12345678.", doc.RootElement.GetProperty("refresh_token").GetString(), StringComparison.Ordinal);

        // What Etsy's refresh does not take: a client_secret, a redirect_uri, a code_verifier, or anything but a form.
        foreach (var extra in new[] { "client_secret", "redirect_uri", "code_verifier" })
        {
            var next = H.Fake.Etsy.AddAccount(7);
            using var request = EtsyRefresh(next, withKey: true, (extra, "x"));
            using var refused = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.True(H.Fake.Etsy.IsValid(next), $"a request with {extra} rotated the token");
        }

        var json = H.Fake.Etsy.AddAccount(8);
        using var asJson = new HttpRequestMessage(HttpMethod.Post, "https://api.etsy.com/v3/public/oauth/token")
        {
            Content = new StringContent(JsonSerializer.Serialize(new { grant_type = "refresh_token", client_id = H.Fake.Etsy.ClientId, refresh_token = json }), Encoding.UTF8, "application/json"),
        };
        asJson.Headers.Add("x-api-key", $"{H.Fake.Etsy.ClientId}:{H.Fake.Etsy.SharedSecret}");
        using var jsonRefused = await http.SendAsync(asJson);
        Assert.Equal(HttpStatusCode.BadRequest, jsonRefused.StatusCode);
        Assert.True(H.Fake.Etsy.IsValid(json));
    }

    [Fact]
    public async Task Shopify_TokenExchange_SamePairWithinSevenDays_RefusedAfter_StillAcceptedAfterTheCutoff()
    {
        Assert.Contains("A lost response may be retried for up to 7 days", ShopifySection, StringComparison.Ordinal);
        using var http = Client();
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        H.Fake.Shopify.Time = clock;
        H.Fake.Shopify.AddStore("ex.myshopify.com", "shpat_old");
        // After the cut-off the Admin API refuses the old token, but the exchange (the way off it) still takes it.
        H.Fake.Shopify.NonExpiringCutoff = clock.GetUtcNow().AddDays(-1);
        using var refused = await http.SendAsync(ValidationRequest("ex.myshopify.com", "shpat_old"));
        Assert.Equal((HttpStatusCode.Forbidden, FakeShopify.NonExpiringRefusedBody), (refused.StatusCode, await refused.Content.ReadAsStringAsync()));

        var (first, firstBody) = await ExchangeAsync(http, "shpat_old");
        var (repeat, repeatBody) = await ExchangeAsync(http, "shpat_old");
        using var old = await http.SendAsync(ValidationRequest("ex.myshopify.com", "shpat_old"));
        var (notExpiring, notExpiringBody) = await ExchangeAsync(http, "shpat_old", expiring: null);
        clock.Advance(TimeSpan.FromDays(7) + TimeSpan.FromSeconds(1));
        var (late, lateBody) = await ExchangeAsync(http, "shpat_old");

        Assert.Equal(HttpStatusCode.OK, first);
        AssertSameShape(ContractJson(@"- 200 body: `(\{""access_token"":""shpat_.*?)`"), firstBody);
        using var pair = JsonDocument.Parse(firstBody);
        Assert.Equal(H.Fake.Shopify.CurrentAccessToken("ex.myshopify.com"), pair.RootElement.GetProperty("access_token").GetString());
        Assert.Equal((HttpStatusCode.OK, firstBody), (repeat, repeatBody));
        Assert.Equal(HttpStatusCode.Unauthorized, old.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, notExpiring);
        Assert.Contains("invalid_request", notExpiringBody, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, late);
        Assert.Equal("invalid_grant", JsonDocument.Parse(lateBody).RootElement.GetProperty("error").GetString());
    }

    private async Task<(HttpStatusCode Status, string Body)> ExchangeAsync(HttpClient http, string subjectToken, string? expiring = "1")
    {
        const string offline = "urn:shopify:params:oauth:token-type:offline-access-token";
        var fields = new List<KeyValuePair<string, string>>
        {
            new("client_id", H.Fake.Shopify.ApiKey), new("client_secret", H.Fake.Shopify.ApiSecret),
            new("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"), new("subject_token", subjectToken),
            new("subject_token_type", offline), new("requested_token_type", offline),
        };
        if (expiring is not null)
        {
            fields.Add(new("expiring", expiring));
        }

        Assert.All(fields.Select(f => f.Key), name => Assert.Contains($"`{name}", ShopifySection, StringComparison.Ordinal));
        using var response = await http.PostAsync("https://ex.myshopify.com/admin/oauth/access_token", new FormUrlEncodedContent(fields));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Shopify_AGraphQlBodyThatIsNotTheValidationQuery_IsRefused()
    {
        using var http = Client();
        H.Fake.Shopify.AddStore("strict.myshopify.com", "shpat_strict");
        foreach (var (body, type) in new[]
        {
            ("""{"query":"{ shop { name email } }"}""", "application/json"),
            ("""{"query":"{ shop { name } }","variables":{}}""", "application/json"),
            ("query={ shop { name } }", "application/x-www-form-urlencoded"),
        })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "https://strict.myshopify.com/admin/api/2026-10/graphql.json")
            {
                Content = new StringContent(body, Encoding.UTF8, type),
            };
            request.Headers.Add("X-Shopify-Access-Token", "shpat_strict");
            using var response = await http.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{body} ({type}): {(int)response.StatusCode}");
        }
    }

    private static HttpRequestMessage ValidationRequest(string shop, string token)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, $"https://{shop}/admin/api/2026-10/graphql.json")
        {
            Content = new StringContent("""{"query":"{ shop { name } }"}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-Shopify-Access-Token", token);
        return request;
    }

    private HttpRequestMessage EtsyRefresh(string refreshToken, bool withKey, params (string Name, string Value)[] extra)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "https://api.etsy.com/v3/public/oauth/token")
        {
            Content = new FormUrlEncodedContent(new[] { ("grant_type", "refresh_token"), ("client_id", H.Fake.Etsy.ClientId), ("refresh_token", refreshToken) }
                .Concat(extra).Select(f => KeyValuePair.Create(f.Item1, f.Item2))),
        };
        if (withKey)
        {
            request.Headers.Add("x-api-key", $"{H.Fake.Etsy.ClientId}:{H.Fake.Etsy.SharedSecret}");
        }

        return request;
    }

    /// <summary>The JSON sample the contract gives after <paramref name="pattern"/>, with its "..." placeholders made valid.</summary>
    private static JsonElement ContractJson(string pattern)
    {
        var sample = Regex.Match(Contract, pattern, RegexOptions.Singleline).Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(sample), $"CONTRACTS.md has no sample for {pattern}");
        using var doc = JsonDocument.Parse(Regex.Replace(sample, @"\.\.\.""", "\""));
        return doc.RootElement.Clone();
    }

    /// <summary>The fake's body has every property of the contract's sample, with values of the same JSON kinds, recursively.</summary>
    private static void AssertSameShape(JsonElement contract, string fake)
    {
        using var doc = JsonDocument.Parse(fake);
        Compare(contract, doc.RootElement, "$");

        static void Compare(JsonElement expected, JsonElement actual, string path)
        {
            var kinds = (expected.ValueKind, actual.ValueKind);
            Assert.True(kinds.Item1 == kinds.Item2 || (kinds.Item1 == JsonValueKind.Null) || (kinds.Item2 == JsonValueKind.Null),
                $"{path}: the contract has {kinds.Item1}, the fake {kinds.Item2}");
            if (expected.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in expected.EnumerateObject())
                {
                    Assert.True(actual.TryGetProperty(property.Name, out var value), $"{path}.{property.Name} is missing from the fake's body");
                    Compare(property.Value, value, $"{path}.{property.Name}");
                }
            }
        }
    }

    [GeneratedRegex(@"^\s*\| (?<case>[^|]+?) \| (?<status>\d{3}|5xx) \| `(?<body>[^`]+)`", RegexOptions.Multiline)]
    private static partial Regex ShopifyTableRow();

    [GeneratedRegex(@"`(?<status>\d{3}(?:/\d{3})?) (?<body>\{[^`]+\})`")]
    private static partial Regex EtsyErrorLine();
}
