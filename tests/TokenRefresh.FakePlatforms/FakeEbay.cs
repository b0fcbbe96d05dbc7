using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TokenRefresh.FakePlatforms;

/// <summary>
/// Fake eBay identity API: the user token's refresh (CONTRACTS.md "eBay"). A refresh token does not rotate: it stays
/// valid, for the scopes the user consented to, until its end or until the user revokes it; each refresh issues a new
/// access token (2 hours) and no refresh token.
/// </summary>
public sealed class FakeEbay
{
    private const string InvalidGrantBody = """{"error":"invalid_grant","error_description":"the provided authorization refresh token is invalid or was issued to another client"}""";
    private const string InvalidClientBody = """{"error":"invalid_client","error_description":"client authentication failed"}""";

    private readonly FakeHttp _http;
    private readonly FaultTable _faults = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Consent> _consents = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _calls = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (string RefreshToken, DateTimeOffset ExpiresAt)> _accessTokens = new(StringComparer.Ordinal);
    private readonly SendLedger _sends = new();
    private int _totalCalls;

    private sealed record Consent(string[] Scopes, DateTimeOffset EndsAt)
    {
        public bool Revoked { get; set; }
    }

    internal FakeEbay(FakeHttp http) => _http = http;

    /// <summary>The app's App ID, expected as the user name of the Basic credentials.</summary>
    public string ClientId { get; set; } = "fake-ebay-app-id";

    /// <summary>The app's Cert ID, expected as the password of the Basic credentials.</summary>
    public string ClientSecret { get; set; } = "fake-ebay-cert-id";

    /// <summary>The scopes a user consents to unless a test says otherwise.</summary>
    public string DefaultScopes { get; set; } = "https://api.ebay.com/oauth/api_scope https://api.ebay.com/oauth/api_scope/sell.inventory";

    /// <summary>The life of the access tokens issued (expires_in): two hours, as eBay's.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(2);

    /// <summary>A fault for every request, whatever its token (an outage, a 429 storm); None by default.</summary>
    public FakeFault PlatformFault { get; set; }

    /// <summary>Requests received, whatever their outcome.</summary>
    public int TotalCalls => Volatile.Read(ref _totalCalls);

    /// <summary>When a refresh token arrived while another request with it was still being handled: two calls for one account at once.</summary>
    public IReadOnlyCollection<(DateTimeOffset At, string RefreshToken)> SentAtOnce => _sends.SentTwice;

    public int CallsFor(string refreshToken) => _calls.TryGetValue(refreshToken, out var n) ? n : 0;

    /// <summary>A user's consent: a refresh token valid until <paramref name="endsAt"/> (18 months from now by default) for the scopes given.</summary>
    public string AddUser(DateTimeOffset? endsAt = null, string? scopes = null)
    {
        var refreshToken = $"v^1.1#i^1#r^1#f^0#I^3#p^3#t^{Convert.ToBase64String(Encoding.UTF8.GetBytes(FakeHttp.NewHex()))}";
        _consents[refreshToken] = new Consent((scopes ?? DefaultScopes).Split(' ', StringSplitOptions.RemoveEmptyEntries),
            endsAt ?? DateTimeOffset.UtcNow.AddSeconds(47_304_000));
        return refreshToken;
    }

    /// <summary>The user withdraws the app's access: the refresh token gets invalid_grant from now on.</summary>
    public void Revoke(string refreshToken)
    {
        if (_consents.TryGetValue(refreshToken, out var consent))
        {
            consent.Revoked = true;
        }
    }

    /// <summary>Applies fault to the next times requests with this refresh token (all of them by default).</summary>
    public void SetFault(string refreshToken, FakeFault fault, int times = int.MaxValue) => _faults.Set(refreshToken, fault, times);

    /// <summary>Whether the main application could call eBay with this access token at that moment.</summary>
    public bool IsAccessTokenValid(string? accessToken, DateTimeOffset at) =>
        accessToken is not null && _accessTokens.TryGetValue(accessToken, out var issued) && at < issued.ExpiresAt
        && _consents.TryGetValue(issued.RefreshToken, out var consent) && !consent.Revoked;

    internal void MapRoutes(IEndpointRouteBuilder app)
    {
        // eBay's host, or the loopback host of the demo's EBAY_API_BASE_URL.
        app.MapPost("/identity/v1/oauth2/token", HandleAsync).RequireHost("api.ebay.com", "127.0.0.1", "localhost");
        app.MapPost("/_fake/ebay/users", ctx => FakeHttp.HandleControlAsync(ctx, AddFromJson));
    }

    // Control API and seed file: {"refreshToken":"..","fault":"None"}; without refreshToken one is made.
    internal JsonObject AddFromJson(JsonElement user)
    {
        var refreshToken = FakeHttp.StringProperty(user, "refreshToken");
        if (string.IsNullOrEmpty(refreshToken))
        {
            refreshToken = AddUser();
        }
        else
        {
            _consents[refreshToken] = new Consent(DefaultScopes.Split(' '), DateTimeOffset.UtcNow.AddSeconds(47_304_000));
        }

        SetFault(refreshToken, FakeHttp.ParseFault(FakeHttp.StringProperty(user, "fault")));
        return new JsonObject { ["refreshToken"] = refreshToken };
    }

    internal JsonObject Stats() => new() { ["totalCalls"] = TotalCalls, ["users"] = _consents.Count, ["sentAtOnce"] = SentAtOnce.Count };

    private async Task HandleAsync(HttpContext ctx)
    {
        Interlocked.Increment(ref _totalCalls);
        // As strict as eBay: a form with exactly these fields; the app's credentials in the header, never in the body.
        if (!ctx.Request.HasFormContentType)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"invalid_request","error_description":"Request must be form encoded"}""");
            return;
        }

        var form = await ctx.Request.ReadFormAsync();
        if (form.Keys.FirstOrDefault(k => k is not ("grant_type" or "refresh_token" or "scope")) is { } extra)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, $$"""{"error":"invalid_request","error_description":"unexpected parameter {{extra}}"}""");
            return;
        }

        var refreshToken = form["refresh_token"].ToString();
        FakeHttp.Count(_calls, refreshToken);
        await _sends.HandleAsync(refreshToken, usedUp: false, () => AnswerAsync(ctx, form, refreshToken));
    }

    private async Task AnswerAsync(HttpContext ctx, IFormCollection form, string refreshToken)
    {
        if (!await _http.WaitLatencyAsync(ctx))
        {
            return;
        }

        var expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{ClientId}:{ClientSecret}"));
        if (ctx.Request.Headers.Authorization != expected)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, InvalidClientBody);
            return;
        }

        if (form["grant_type"] != "refresh_token" || refreshToken.Length == 0 || string.IsNullOrWhiteSpace(form["scope"]))
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"invalid_request","error_description":"grant_type, refresh_token and scope are required"}""");
            return;
        }

        var fault = PlatformFault is not FakeFault.None and var everyone ? everyone : _faults.Take(refreshToken, static _ => true);
        if (await TryWriteFaultAsync(ctx, fault))
        {
            return;
        }

        if (!_consents.TryGetValue(refreshToken, out var consent) || consent.Revoked || DateTimeOffset.UtcNow >= consent.EndsAt)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, InvalidGrantBody);
            return;
        }

        // The same scopes as the user consented to, or a subset.
        if (form["scope"].ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries).Except(consent.Scopes).Any())
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"invalid_scope","error_description":"The requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client"}""");
            return;
        }

        var accessToken = $"v^1.1#i^1#p^3#I^3#r^0#t^{FakeHttp.NewHex()}";
        _accessTokens[accessToken] = (refreshToken, DateTimeOffset.UtcNow + AccessTokenLifetime);
        if (fault == FakeFault.RotateThenReset)
        {
            ctx.Abort(); // issued, and the answer lost
            return;
        }

        var expiresIn = fault switch
        {
            FakeFault.MissingExpiresIn => "",
            _ => $""","expires_in":{(int)AccessTokenLifetime.TotalSeconds}""",
        };
        await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK, $$"""{"access_token":"{{accessToken}}"{{expiresIn}},"token_type":"User Access Token"}""");
    }

    private async Task<bool> TryWriteFaultAsync(HttpContext ctx, FakeFault fault)
    {
        if (await _http.TryWriteTransportFaultAsync(ctx, fault))
        {
            return true;
        }

        switch (fault)
        {
            case FakeFault.ServerError:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status500InternalServerError, """{"error":"server_error","error_description":"There was a problem with an eBay internal system or process."}""");
                return true;
            case FakeFault.InvalidGrant:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, InvalidGrantBody);
                return true;
            case FakeFault.InvalidClient:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, InvalidClientBody);
                return true;
            case FakeFault.RateLimited:
                ctx.Response.Headers.RetryAfter = "3";
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status429TooManyRequests, """{"error":"too_many_requests"}""");
                return true;
            case FakeFault.TruncatedJson:
                await FakeHttp.WriteTruncatedAsync(ctx, """{"access_token":"v^1.1#i^1#p^3#truncated","expires_in":7200,"token_type":"User Access Token"}""");
                return true;
            default:
                return false;
        }
    }
}
