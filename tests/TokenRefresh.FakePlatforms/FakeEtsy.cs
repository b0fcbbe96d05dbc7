using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TokenRefresh.FakePlatforms;

/// <summary>Fake Etsy Open API v3 token endpoint (CONTRACTS.md "Refresh an access token").</summary>
public sealed class FakeEtsy
{
    private const string InvalidGrantBody = """{"error":"invalid_grant","error_description":"refresh_token is revoked"}""";

    private readonly FakeHttp _http;
    private readonly FaultTable _faults = new(StringComparer.Ordinal);
    // Live refresh tokens and their user id: removing one is the atomic "this token is used up".
    private readonly ConcurrentDictionary<string, long> _valid = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (string AccessToken, string RefreshToken)> _issued = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _calls = new(StringComparer.Ordinal);
    private long _lastGeneratedUserId = 90_000_000;
    private int _totalCalls;
    private readonly ConcurrentQueue<DateTimeOffset> _callTimes = new();
    private readonly ConcurrentDictionary<string, DateTimeOffset> _lastCallAt = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _rotatedAt = new(StringComparer.Ordinal);
    private readonly SendLedger _sends = new();
    // The ledger: every access token issued, its user and when it ends (removed when the user revokes access).
    private readonly ConcurrentDictionary<string, (long UserId, DateTimeOffset ExpiresAt)> _accessTokens = new(StringComparer.Ordinal);

    internal FakeEtsy(FakeHttp http)
    {
        _http = http;
        Quota = new RollingQuota(() => LimitPerDay);
    }

    /// <summary>The app's keystring: expected as form field client_id and as the first half of x-api-key.</summary>
    public string ClientId { get; set; } = "fake-etsy-keystring";

    /// <summary>The app's shared secret: expected as the second half of x-api-key.</summary>
    public string SharedSecret { get; set; } = "fake-etsy-shared-secret";

    /// <summary>The daily quota sent in x-limit-per-day (Etsy's newer documented default); x-remaining-today counts down from it.</summary>
    public int LimitPerDay { get; set; } = 100_000;

    /// <summary>
    /// <see cref="LimitPerDay"/> enforced as Etsy does, over a rolling window, once <see cref="RollingQuota.Enforced"/>:
    /// off by default.
    /// </summary>
    public RollingQuota Quota { get; }

    /// <summary>The life of the access tokens issued (expires_in): an hour, as Etsy's; shorter for a compressed day.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>A fault for every token request, whatever its token (an outage, a 429 storm, hangs); None by default.</summary>
    public FakeFault PlatformFault { get; set; }

    /// <summary>Seconds sent in retry-after with a RateLimited answer.</summary>
    public int RetryAfterSeconds { get; set; } = 2;

    /// <summary>Runs after a rotation is issued and before the answer is sent (given the old refresh token): a test's hook to inject faults there.</summary>
    public Func<string, Task>? OnRotated { get; set; }

    /// <summary>Awaited with the refresh token of each well-formed refresh request before it is answered (a test's moment mid-call).</summary>
    public Func<string, Task>? OnRequest { get; set; }

    /// <summary>When each token request arrived, for rate-limit checks.</summary>
    public IReadOnlyCollection<DateTimeOffset> CallTimes => _callTimes.ToArray();

    /// <summary>Rotations issued so far.</summary>
    public int Rotations => _issued.Count;

    /// <summary>Token requests received, whatever their outcome.</summary>
    public int TotalCalls => Volatile.Read(ref _totalCalls);

    /// <summary>
    /// When a refresh token arrived while another request with it was still being handled, or after Etsy had already
    /// rotated it: the sends that make Etsy revoke a grant. (A retry after a 5xx or a 429, which used nothing up, is not one.)
    /// </summary>
    public IReadOnlyCollection<(DateTimeOffset At, string RefreshToken)> SentTwice => _sends.SentTwice;

    /// <summary>When a request first carried the refresh token.</summary>
    public DateTimeOffset? FirstSentAt(string refreshToken) => _sends.FirstSentAt(refreshToken);

    /// <summary>Refresh tokens that were sent in more than one request.</summary>
    public IReadOnlyCollection<string> TokensUsedMoreThanOnce =>
        _calls.Where(c => c.Value > 1).Select(c => c.Key).ToArray();

    /// <summary>Registers a user and returns a valid refresh token "{etsyUserId}.rt{24 hex}".</summary>
    public string AddAccount(long etsyUserId)
    {
        var refreshToken = NewToken(etsyUserId, "rt");
        _valid[refreshToken] = etsyUserId;
        return refreshToken;
    }

    /// <summary>Issues a pair for a user as if at <paramref name="issuedAt"/> (a consent, or a reconnect): both are valid, the access token until issuedAt + its lifetime.</summary>
    public (string AccessToken, string RefreshToken) Issue(long etsyUserId, DateTimeOffset issuedAt)
    {
        var pair = (AccessToken: NewToken(etsyUserId, "at"), RefreshToken: NewToken(etsyUserId, "rt"));
        _accessTokens[pair.AccessToken] = (etsyUserId, issuedAt + AccessTokenLifetime);
        _valid[pair.RefreshToken] = etsyUserId;
        return pair;
    }

    /// <summary>Whether the main application could call Etsy with this access token at that moment (the ledger).</summary>
    public bool IsAccessTokenValid(string? accessToken, DateTimeOffset at) =>
        accessToken is not null && _accessTokens.TryGetValue(accessToken, out var issued) && at < issued.ExpiresAt;

    /// <summary>The user withdraws the app's access, or reconnects (keeping the pair just issued): every other token of theirs stops working.</summary>
    public void RevokeUser(long etsyUserId, (string AccessToken, string RefreshToken)? keep = null)
    {
        foreach (var (token, userId) in _valid)
        {
            if (userId == etsyUserId && token != keep?.RefreshToken)
            {
                _valid.TryRemove(token, out _);
            }
        }

        foreach (var (token, issued) in _accessTokens)
        {
            if (issued.UserId == etsyUserId && token != keep?.AccessToken)
            {
                _accessTokens.TryRemove(token, out _);
            }
        }
    }

    /// <summary>Forgets access tokens that ended before <paramref name="before"/> (a long run's ledger stays small).</summary>
    public void ForgetExpired(DateTimeOffset before)
    {
        foreach (var (token, issued) in _accessTokens)
        {
            if (issued.ExpiresAt < before)
            {
                _accessTokens.TryRemove(token, out _);
            }
        }
    }

    /// <summary>Registers a chosen refresh token as valid; its user id is the number before the first dot, else a generated one.</summary>
    public void AddRefreshToken(string refreshToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(refreshToken);
        var dot = refreshToken.IndexOf('.', StringComparison.Ordinal);
        var userId = dot > 0 && long.TryParse(refreshToken.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var id)
            ? id
            : NextUserId();
        _valid[refreshToken] = userId;
    }

    /// <summary>Applies fault to the next times requests carrying refreshToken (all of them by default).</summary>
    public void SetFault(string refreshToken, FakeFault fault, int times = int.MaxValue) => _faults.Set(refreshToken, fault, times);

    /// <summary>Later uses of refreshToken get invalid_grant.</summary>
    public void Revoke(string refreshToken) => _valid.TryRemove(refreshToken, out _);

    /// <summary>When the last token request carrying refreshToken arrived.</summary>
    public DateTimeOffset? LastCallAt(string refreshToken) => _lastCallAt.TryGetValue(refreshToken, out var at) ? at : null;

    /// <summary>How many token requests carried refreshToken, failed ones included.</summary>
    public int CallsFor(string refreshToken) => _calls.TryGetValue(refreshToken, out var n) ? n : 0;

    /// <summary>When Etsy rotated oldRefreshToken (issued the pair that replaced it), if it ever did.</summary>
    public DateTimeOffset? RotatedAt(string oldRefreshToken) => _rotatedAt.TryGetValue(oldRefreshToken, out var at) ? at : null;

    /// <summary>The pair issued in exchange for oldRefreshToken, if it was ever rotated.</summary>
    public (string AccessToken, string RefreshToken)? IssuedFor(string oldRefreshToken) =>
        _issued.TryGetValue(oldRefreshToken, out var pair) ? pair : null;

    public bool IsValid(string refreshToken) => _valid.ContainsKey(refreshToken);

    internal void MapRoutes(IEndpointRouteBuilder app)
    {
        // Etsy's host, or the loopback host of the demo's ETSY_API_BASE_URL; never a shop's host.
        app.MapPost("/v3/public/oauth/token", HandleTokenAsync).RequireHost("api.etsy.com", "127.0.0.1", "localhost");
        app.MapPost("/_fake/etsy/accounts", ctx => FakeHttp.HandleControlAsync(ctx, AddFromJson));
    }

    // Control API and seed file: {"refreshToken":"..","fault":"None"}; without refreshToken one is made (optional "userId").
    internal JsonObject AddFromJson(JsonElement account)
    {
        var refreshToken = FakeHttp.StringProperty(account, "refreshToken");
        var fault = FakeHttp.ParseFault(FakeHttp.StringProperty(account, "fault"));
        if (string.IsNullOrEmpty(refreshToken))
        {
            var userId = FakeHttp.Property(account, "userId") is { ValueKind: JsonValueKind.Number } id ? id.GetInt64() : NextUserId();
            refreshToken = AddAccount(userId);
        }
        else
        {
            AddRefreshToken(refreshToken);
        }

        SetFault(refreshToken, fault);
        return new JsonObject { ["refreshToken"] = refreshToken };
    }

    internal JsonObject Stats() => new()
    {
        ["totalCalls"] = TotalCalls,
        ["validRefreshTokens"] = _valid.Count,
        ["rotations"] = _issued.Count,
        ["tokensUsedMoreThanOnce"] = _calls.Count(c => c.Value > 1),
    };

    private async Task HandleTokenAsync(HttpContext ctx)
    {
        var totalCalls = Interlocked.Increment(ref _totalCalls);
        _callTimes.Enqueue(DateTimeOffset.UtcNow);
        if (Quota.Take(DateTimeOffset.UtcNow) is { } retryAfter)
        {
            ctx.Response.Headers["x-limit-per-day"] = LimitPerDay.ToString(CultureInfo.InvariantCulture);
            ctx.Response.Headers["x-remaining-today"] = "0";
            ctx.Response.Headers["retry-after"] = ((int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status429TooManyRequests, """{"error":"daily quota exceeded"}""");
            return;
        }

        // As strict as Etsy: a form, and only the fields of a refresh (no client_secret, redirect_uri or code_verifier).
        if (ctx.Request.ContentType?.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase) != true)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest,
                """{"error":"invalid_request","error_description":"Content-Type must be application/x-www-form-urlencoded"}""");
            return;
        }

        var form = await ctx.Request.ReadFormAsync();
        if (form.Keys.FirstOrDefault(k => k is not ("grant_type" or "client_id" or "refresh_token")) is { } extra)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest,
                $$"""{"error":"invalid_request","error_description":"Unexpected parameter {{extra}}"}""");
            return;
        }

        var refreshToken = form["refresh_token"].ToString();
        if (refreshToken.Length == 0)
        {
            await AnswerAsync(ctx, form, refreshToken, totalCalls);
            return;
        }

        FakeHttp.Count(_calls, refreshToken);
        _lastCallAt[refreshToken] = DateTimeOffset.UtcNow;
        await _sends.HandleAsync(refreshToken, _issued.ContainsKey(refreshToken), () => AnswerAsync(ctx, form, refreshToken, totalCalls));
    }

    private async Task AnswerAsync(HttpContext ctx, IFormCollection form, string refreshToken, int totalCalls)
    {

        if (!await _http.WaitLatencyAsync(ctx))
        {
            return;
        }

        if (ctx.Request.Headers["x-api-key"] != $"{ClientId}:{SharedSecret}")
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status403Forbidden, """{"error":"Shared secret is required in x-api-key header."}""");
            return;
        }

        if (form["client_id"] != ClientId)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, """{"error":"invalid_client","error_description":"Invalid client_id"}""");
            return;
        }

        if (form["grant_type"] != "refresh_token")
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"unsupported_grant_type"}""");
            return;
        }

        if (OnRequest is { } onRequest)
        {
            await onRequest(refreshToken);
        }

        var fault = PlatformFault is not FakeFault.None and var everyone ? everyone : _faults.Take(refreshToken, static _ => true);
        if (await TryWriteFaultAsync(ctx, fault, refreshToken))
        {
            return;
        }

        // Only one of several concurrent requests with the same token can remove it: the others get invalid_grant.
        if (!_valid.TryRemove(refreshToken, out var userId))
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, InvalidGrantBody);
            return;
        }

        var pair = (AccessToken: NewToken(userId, "at"), RefreshToken: NewToken(userId, "rt"));
        _valid[pair.RefreshToken] = userId;
        _accessTokens[pair.AccessToken] = (userId, DateTimeOffset.UtcNow + AccessTokenLifetime);
        _issued[refreshToken] = pair;
        _rotatedAt[refreshToken] = DateTimeOffset.UtcNow;
        if (OnRotated is { } onRotated)
        {
            await onRotated(refreshToken);
        }

        if (fault == FakeFault.RotateThenReset)
        {
            ctx.Abort();
            return;
        }

        if (fault == FakeFault.RotateThenBadCharset)
        {
            ctx.Response.StatusCode = StatusCodes.Status200OK;
            ctx.Response.ContentType = "application/json; charset=x-no-such-charset";
            await ctx.Response.WriteAsync(TokenBody(pair.AccessToken, pair.RefreshToken, (int)AccessTokenLifetime.TotalSeconds));
            return;
        }

        var headers = ctx.Response.Headers;
        headers["x-limit-per-second"] = "150";
        headers["x-remaining-this-second"] = "149";
        headers["x-limit-per-day"] = LimitPerDay.ToString(CultureInfo.InvariantCulture);
        headers["x-remaining-today"] = Math.Max(0, LimitPerDay - (Quota.Enforced ? Quota.Taken : totalCalls)).ToString(CultureInfo.InvariantCulture);
        var expiresIn = fault switch
        {
            FakeFault.MissingExpiresIn => (int?)null,
            FakeFault.AbsurdExpiresIn => -30,
            _ => (int)AccessTokenLifetime.TotalSeconds,
        };
        await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK, TokenBody(pair.AccessToken, pair.RefreshToken, expiresIn));
    }

    // Answers faults that replace the normal answer; false for None and the faults that shape a real rotation.
    private async Task<bool> TryWriteFaultAsync(HttpContext ctx, FakeFault fault, string refreshToken)
    {
        if (await _http.TryWriteTransportFaultAsync(ctx, fault))
        {
            return true;
        }

        switch (fault)
        {
            case FakeFault.ServerError:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status500InternalServerError, """{"error":"Server Error"}""");
                return true;
            case FakeFault.InvalidGrant:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, InvalidGrantBody);
                return true;
            case FakeFault.InvalidClient:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, """{"error":"invalid_client","error_description":"Invalid client_id"}""");
                return true;
            case FakeFault.RateLimited or FakeFault.Throttled:
                ctx.Response.Headers["retry-after"] = RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status429TooManyRequests, """{"error":"rate limited"}""");
                return true;
            case FakeFault.TruncatedJson:
                // Made-up tokens that are never registered: the old token stays valid.
                var userId = UserIdOf(refreshToken);
                await FakeHttp.WriteTruncatedAsync(ctx, TokenBody(NewToken(userId, "at"), NewToken(userId, "rt"), 3600));
                return true;
            case FakeFault.MissingRefreshToken:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK, TokenBody(NewToken(UserIdOf(refreshToken), "at"), null, 3600));
                return true;
            case FakeFault.Unauthorized:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, """{"error":"invalid_token","error_description":"access token is expired"}""");
                return true;
            case FakeFault.PaymentRequired:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status402PaymentRequired, """{"error":"Unavailable Shop"}""");
                return true;
            case FakeFault.Forbidden:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status403Forbidden, """{"error":"User does not have access"}""");
                return true;
            case FakeFault.NotFound:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status404NotFound, """{"error":"Not Found"}""");
                return true;
            case FakeFault.Locked or FakeFault.ShopInactive:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status423Locked, """{"error":"This shop is unavailable"}""");
                return true;
            default:
                return false;
        }
    }

    private static string TokenBody(string accessToken, string? refreshToken, int? expiresIn)
    {
        var body = new JsonObject { ["access_token"] = accessToken, ["token_type"] = "Bearer" };
        if (expiresIn is { } seconds)
        {
            body["expires_in"] = seconds;
        }

        if (refreshToken is not null)
        {
            body["refresh_token"] = refreshToken;
        }

        return body.ToJsonString();
    }

    private static string NewToken(long userId, string kind) =>
        string.Create(CultureInfo.InvariantCulture, $"{userId}.{kind}{FakeHttp.NewHex()}");

    private long UserIdOf(string refreshToken) => _valid.TryGetValue(refreshToken, out var userId) ? userId : NextUserId();

    private long NextUserId() => Interlocked.Increment(ref _lastGeneratedUserId);
}
