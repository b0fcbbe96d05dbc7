using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TokenRefresh.FakePlatforms;

/// <summary>Fake Shopify Admin API: GraphQL shop query and the OAuth token endpoint (CONTRACTS.md "Shopify Admin API").</summary>
public sealed class FakeShopify
{
    /// <summary>What Shopify answers a non-expiring offline token where it requires an expiring one (CONTRACTS.md).</summary>
    public const string NonExpiringRefusedBody = """{"errors":"Non-expiring access tokens are no longer accepted for the Admin API. Start using expiring offline tokens."}""";
    private const string UnauthorizedBody = """{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}""";
    private const string InvalidGrantBody = """{"error":"invalid_grant","error_description":"The refresh token or subject token is invalid, expired or revoked."}""";
    private const string CostBody = """{"requestedQueryCost":1,"actualQueryCost":1,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":1999,"restoreRate":100.0}}""";
    private const string TokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";
    private const string OfflineTokenType = "urn:shopify:params:oauth:token-type:offline-access-token";
    private const string Scope = "write_products,read_orders";

    /// <summary>The cheapest query that proves a token works (CONTRACTS.md), the only one this fake answers.</summary>
    public const string ValidationQuery = "{ shop { name } }";
    private static readonly TimeSpan RefreshTokenLifetime = TimeSpan.FromDays(90);
    private static readonly TimeSpan RefreshGrace = TimeSpan.FromDays(30);
    private static readonly TimeSpan ExchangeRetryWindow = TimeSpan.FromDays(7);

    private readonly FakeHttp _http;
    private readonly FaultTable _faults = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, Store> _stores = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, int> _graphQlCalls = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, int> _oauthCalls = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, int> _refreshCalls = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _rotatedFrom = new(StringComparer.Ordinal);
    private readonly SendLedger _sends = new();
    private readonly ConcurrentDictionary<string, int> _exchanges = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _exchangeAnswered = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _sentAfterAnswer = new(StringComparer.Ordinal);
    private int _totalCalls;
    private int _totalGraphQlCalls;
    private int _totalOAuthCalls;
    private string? _lastApiVersion;

    internal FakeShopify(FakeHttp http) => _http = http;

    /// <summary>The app's client_id.</summary>
    public string ApiKey { get; set; } = "fake-shopify-api-key";

    /// <summary>The app's client_secret.</summary>
    public string ApiSecret { get; set; } = "fake-shopify-api-secret";

    /// <summary>The life of the expiring access tokens issued (expires_in): an hour, as Shopify's; shorter for a compressed day.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// A fault for every request, whatever the store (an outage, hangs, or Unauthorized: a wave of 401s to valid tokens, as in
    /// an incident); the token endpoint takes only ServerError, Hang and RateLimited from it. None by default.
    /// </summary>
    public FakeFault PlatformFault { get; set; }

    /// <summary>
    /// From this moment the Admin API refuses non-expiring offline tokens with 403 (<see cref="NonExpiringRefusedBody"/>), as
    /// Shopify does for public apps from 2027-01-01; the token exchange still accepts them. None by default.
    /// </summary>
    public DateTimeOffset? NonExpiringCutoff { get; set; }

    /// <summary>The fake's clock (the 7-day window of a repeated exchange, the cut-off); the system's by default.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>Token exchanges received for this subject token (the old non-expiring token), answered or not.</summary>
    public int ExchangesFor(string subjectToken) => _exchanges.TryGetValue(subjectToken, out var n) ? n : 0;

    /// <summary>
    /// Subject tokens sent again after an exchange of theirs had been answered with a pair: a store sent twice beyond the
    /// documented repeat of a lost answer (a client that died before reading its answer repeats it too).
    /// </summary>
    public IReadOnlyCollection<string> ExchangedAgainAfterAnswer => _sentAfterAnswer.Keys.ToArray();

    /// <summary>Whether the main application could call Shopify for this store with this access token at that moment.</summary>
    public bool IsAccessTokenValid(string shopDomain, string? accessToken, DateTimeOffset at) =>
        accessToken is not null && Find(shopDomain)?.Accepts(accessToken, at) == true;

    /// <summary>Whether accessToken is the one a refresh replaced less than <paramref name="within"/> before <paramref name="at"/> (the pair's answer may still be on its way to storage).</summary>
    public bool WasReplacedWithin(string shopDomain, string? accessToken, DateTimeOffset at, TimeSpan within) =>
        accessToken is not null && Find(shopDomain)?.WasReplacedWithin(accessToken, at, within) == true;

    /// <summary>The merchant uninstalls the app: the store's tokens stop working.</summary>
    public void Uninstall(string shopDomain)
    {
        RevokeAccessToken(shopDomain);
        RevokeRefreshToken(shopDomain);
    }

    /// <summary>GraphQL and OAuth requests received, whatever their outcome.</summary>
    public int TotalCalls => Volatile.Read(ref _totalCalls);

    /// <summary>The {version} of the last GraphQL request.</summary>
    public string? LastApiVersion => Volatile.Read(ref _lastApiVersion);

    /// <summary>When a refresh token arrived while another request with it was still being handled, or after it had been used for a new pair.</summary>
    public IReadOnlyCollection<(DateTimeOffset At, string RefreshToken)> SentTwice => _sends.SentTwice;

    /// <summary>When a request first carried the refresh token.</summary>
    public DateTimeOffset? FirstSentAt(string refreshToken) => _sends.FirstSentAt(refreshToken);

    /// <summary>Refresh tokens that were sent in more than one OAuth request.</summary>
    public IReadOnlyCollection<string> RefreshTokensUsedMoreThanOnce =>
        _refreshCalls.Where(c => c.Value > 1).Select(c => c.Key).ToArray();

    /// <summary>A store with a valid non-expiring offline access token.</summary>
    public void AddStore(string shopDomain, string accessToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(shopDomain);
        ArgumentException.ThrowIfNullOrEmpty(accessToken);
        _stores[shopDomain] = Store.NonExpiring(shopDomain, accessToken, AccessTokenLifetime);
    }

    /// <summary>A store with an expiring pair (shpat_ access token valid 3600 s, shprt_ refresh token).</summary>
    public (string AccessToken, string RefreshToken) AddExpiringStore(string shopDomain, DateTimeOffset? issuedAt = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(shopDomain);
        var store = new Store(shopDomain, AccessTokenLifetime);
        var pair = store.IssueFresh(issuedAt ?? DateTimeOffset.UtcNow);
        _stores[shopDomain] = store;
        return pair;
    }

    /// <summary>A store with an expiring pair of chosen values (for seed files), issued now.</summary>
    public void AddExpiringStore(string shopDomain, string accessToken, string refreshToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(shopDomain);
        var store = new Store(shopDomain, AccessTokenLifetime);
        store.Seed(accessToken, refreshToken, DateTimeOffset.UtcNow);
        _stores[shopDomain] = store;
    }

    /// <summary>Applies fault to the next times requests for the shop (all of them by default), GraphQL and OAuth alike.</summary>
    /// <remarks>Token-response faults (MissingExpiresIn, AbsurdExpiresIn, MissingRefreshToken, RotateThenReset) wait for an
    /// OAuth request and GraphQL-only ones (Throttled, ShopInactive) for a GraphQL request; the other kind passes untouched.</remarks>
    public void SetFault(string shopDomain, FakeFault fault, int times = int.MaxValue) => _faults.Set(shopDomain, fault, times);

    /// <summary>GraphQL calls with the current access token get 401 from now on.</summary>
    public void RevokeAccessToken(string shopDomain) => Find(shopDomain)?.RevokeAccessToken();

    /// <summary>The current (and any previous, in grace) refresh token get invalid_grant from now on.</summary>
    public void RevokeRefreshToken(string shopDomain) => Find(shopDomain)?.RevokeRefreshToken();

    public int GraphQlCallsFor(string shopDomain) => _graphQlCalls.TryGetValue(shopDomain, out var n) ? n : 0;

    public int OAuthCallsFor(string shopDomain) => _oauthCalls.TryGetValue(shopDomain, out var n) ? n : 0;

    /// <summary>How many OAuth requests carried refreshToken, failed ones included.</summary>
    public int RefreshCallsFor(string refreshToken) => _refreshCalls.TryGetValue(refreshToken, out var n) ? n : 0;

    public string? CurrentAccessToken(string shopDomain) => Find(shopDomain)?.AccessToken;

    /// <summary>The newest refresh token (the one a previous token in grace would be replaced by).</summary>
    public string? CurrentRefreshToken(string shopDomain) => Find(shopDomain)?.RefreshToken;

    public bool IsExpiring(string shopDomain) => Find(shopDomain)?.IsExpiring ?? false;

    internal void MapRoutes(IEndpointRouteBuilder app)
    {
        // Routed by host, as Shopify is: every store at its own {name}.myshopify.com.
        app.MapPost("/admin/api/{version}/graphql.json", HandleGraphQlAsync).RequireHost("*.myshopify.com");
        app.MapPost("/admin/oauth/access_token", HandleOAuthAsync).RequireHost("*.myshopify.com");
        app.MapPost("/_fake/shopify/stores", ctx => FakeHttp.HandleControlAsync(ctx, AddFromJson));
    }

    // Control API and seed file: {"shop":"..","accessToken":"..","fault":"None","faultTimes":1,"expiring":false,"uninstalled":false}.
    internal JsonObject AddFromJson(JsonElement store)
    {
        var shop = FakeHttp.StringProperty(store, "shop");
        if (string.IsNullOrEmpty(shop))
        {
            throw new ArgumentException("\"shop\" is required.", nameof(store));
        }

        var fault = FakeHttp.ParseFault(FakeHttp.StringProperty(store, "fault"));
        var result = new JsonObject { ["shop"] = shop };
        if (FakeHttp.Property(store, "expiring") is { ValueKind: JsonValueKind.True }
            && FakeHttp.StringProperty(store, "accessToken") is { Length: > 0 } seededAccess
            && FakeHttp.StringProperty(store, "refreshToken") is { Length: > 0 } seededRefresh)
        {
            AddExpiringStore(shop, seededAccess, seededRefresh);
            result["accessToken"] = seededAccess;
            result["refreshToken"] = seededRefresh;
        }
        else if (FakeHttp.Property(store, "expiring") is { ValueKind: JsonValueKind.True })
        {
            var (accessToken, refreshToken) = AddExpiringStore(shop);
            result["accessToken"] = accessToken;
            result["refreshToken"] = refreshToken;
        }
        else
        {
            var accessToken = FakeHttp.StringProperty(store, "accessToken");
            accessToken = string.IsNullOrEmpty(accessToken) ? "shpat_" + FakeHttp.NewHex() : accessToken;
            AddStore(shop, accessToken);
            result["accessToken"] = accessToken;
        }

        SetFault(shop, fault, FakeHttp.Property(store, "faultTimes") is { ValueKind: JsonValueKind.Number } times ? times.GetInt32() : int.MaxValue);
        if (FakeHttp.Property(store, "uninstalled") is { ValueKind: JsonValueKind.True })
        {
            Uninstall(shop);
        }

        return result;
    }

    internal JsonObject Stats() => new()
    {
        ["totalCalls"] = TotalCalls,
        ["graphQlCalls"] = Volatile.Read(ref _totalGraphQlCalls),
        ["oauthCalls"] = Volatile.Read(ref _totalOAuthCalls),
        ["stores"] = _stores.Count,
        ["expiringStores"] = _stores.Values.Count(s => s.IsExpiring),
        ["refreshTokensUsedMoreThanOnce"] = _refreshCalls.Count(c => c.Value > 1),
        ["exchanges"] = _exchanges.Values.Sum(),
        ["exchangedAgainAfterAnswer"] = _sentAfterAnswer.Count,
        ["lastApiVersion"] = LastApiVersion,
    };

    private async Task HandleGraphQlAsync(HttpContext ctx)
    {
        var shop = ctx.Request.Host.Host;
        var version = (string)ctx.Request.RouteValues["version"]!;
        Interlocked.Increment(ref _totalCalls);
        Interlocked.Increment(ref _totalGraphQlCalls);
        FakeHttp.Count(_graphQlCalls, shop);
        Volatile.Write(ref _lastApiVersion, version);

        if (!await _http.WaitLatencyAsync(ctx))
        {
            return;
        }

        ctx.Response.Headers["X-Shopify-API-Version"] = version;
        var store = Find(shop);
        var fault = PlatformFault is not FakeFault.None and var everyone ? everyone : _faults.Take(shop, static f => !IsTokenResponseFault(f));
        if (await TryWriteFaultAsync(ctx, fault, () => ShopBody(store?.Name ?? shop)))
        {
            return;
        }

        var accessToken = ctx.Request.Headers["X-Shopify-Access-Token"].ToString();
        var now = Time.GetUtcNow();
        if (store is null || accessToken.Length == 0 || !store.Accepts(accessToken, now))
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, UnauthorizedBody);
            return;
        }

        if (!store.IsExpiring && now >= NonExpiringCutoff)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status403Forbidden, NonExpiringRefusedBody);
            return;
        }

        if (!await AsksForShopAsync(ctx.Request))
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"errors":{"query":"Required parameter missing or invalid"}}""");
            return;
        }

        await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK, ShopBody(store.Name));
    }

    private async Task HandleOAuthAsync(HttpContext ctx)
    {
        var shop = ctx.Request.Host.Host;
        Interlocked.Increment(ref _totalCalls);
        Interlocked.Increment(ref _totalOAuthCalls);
        FakeHttp.Count(_oauthCalls, shop);
        var fields = await ReadFieldsAsync(ctx.Request);
        var refreshToken = fields?.GetValueOrDefault("refresh_token");
        if (string.IsNullOrEmpty(refreshToken))
        {
            await AnswerOAuthAsync(ctx, shop, fields, refreshToken);
            return;
        }

        FakeHttp.Count(_refreshCalls, refreshToken);
        await _sends.HandleAsync(refreshToken, _rotatedFrom.ContainsKey(refreshToken), () => AnswerOAuthAsync(ctx, shop, fields, refreshToken));
    }

    private async Task AnswerOAuthAsync(HttpContext ctx, string shop, Dictionary<string, string>? fields, string? refreshToken)
    {

        if (!await _http.WaitLatencyAsync(ctx))
        {
            return;
        }

        if (fields is null)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"invalid_request","error_description":"Expected a form or JSON body."}""");
            return;
        }

        if (fields.GetValueOrDefault("client_id") != ApiKey || fields.GetValueOrDefault("client_secret") != ApiSecret)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"invalid_client"}""");
            return;
        }

        var fault = PlatformFault is FakeFault.ServerError or FakeFault.Hang or FakeFault.RateLimited
            ? PlatformFault
            : _faults.Take(shop, static f => f is not (FakeFault.Throttled or FakeFault.ShopInactive or FakeFault.AbsurdThrottle));
        if (fault == FakeFault.MissingRefreshToken)
        {
            // A made-up access token that is never registered: nothing rotates.
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK, TokenBody("shpat_" + FakeHttp.NewHex(), null, 3600));
            return;
        }

        if (await TryWriteFaultAsync(ctx, fault, () => TokenBody("shpat_" + FakeHttp.NewHex(), "shprt_" + FakeHttp.NewHex(), 3600)))
        {
            return;
        }

        var store = Find(shop);
        var now = Time.GetUtcNow();
        (string AccessToken, string RefreshToken)? pair;
        switch (fields.GetValueOrDefault("grant_type"))
        {
            case "refresh_token":
                pair = store?.Refresh(refreshToken ?? "", now);
                if (pair is not null)
                {
                    _rotatedFrom[refreshToken!] = true;
                }

                break;
            case TokenExchangeGrant:
                if (fields.GetValueOrDefault("subject_token_type") != OfflineTokenType
                    || fields.GetValueOrDefault("requested_token_type") != OfflineTokenType
                    || fields.GetValueOrDefault("expiring") is not ("1" or "true"))
                {
                    await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest,
                        """{"error":"invalid_request","error_description":"subject_token_type and requested_token_type must be offline-access-token, with expiring=1."}""");
                    return;
                }

                var subject = fields.GetValueOrDefault("subject_token") ?? "";
                FakeHttp.Count(_exchanges, subject);
                if (_exchangeAnswered.ContainsKey(subject))
                {
                    _sentAfterAnswer[subject] = true;
                }

                pair = store?.Exchange(subject, now);
                if (pair is not null && fault != FakeFault.RotateThenReset)
                {
                    _exchangeAnswered[subject] = true;
                }

                break;
            default:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"unsupported_grant_type"}""");
                return;
        }

        if (pair is not { } issued)
        {
            await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, InvalidGrantBody);
            return;
        }

        if (fault == FakeFault.RotateThenReset)
        {
            ctx.Abort();
            return;
        }

        var expiresIn = fault switch
        {
            FakeFault.MissingExpiresIn => (int?)null,
            FakeFault.AbsurdExpiresIn => -30,
            _ => (int)AccessTokenLifetime.TotalSeconds,
        };
        await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK, TokenBody(issued.AccessToken, issued.RefreshToken, expiresIn));
    }

    // Answers faults that replace the normal answer; false for None and the faults that shape a real token response.
    private async Task<bool> TryWriteFaultAsync(HttpContext ctx, FakeFault fault, Func<string> validBody)
    {
        if (await _http.TryWriteTransportFaultAsync(ctx, fault))
        {
            return true;
        }

        switch (fault)
        {
            case FakeFault.ServerError:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status500InternalServerError, """{"errors":"An unexpected error occurred"}""");
                return true;
            case FakeFault.InvalidGrant:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, """{"error":"invalid_grant","error_description":"refresh_token is revoked"}""");
                return true;
            case FakeFault.InvalidClient:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, """{"error":"invalid_client","error_description":"Client authentication failed"}""");
                return true;
            case FakeFault.RateLimited:
                ctx.Response.Headers.RetryAfter = "2.0";
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status429TooManyRequests,
                    """{"errors":"Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}""");
                return true;
            case FakeFault.TruncatedJson:
                await FakeHttp.WriteTruncatedAsync(ctx, validBody());
                return true;
            case FakeFault.Unauthorized:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status401Unauthorized, UnauthorizedBody);
                return true;
            case FakeFault.PaymentRequired:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status402PaymentRequired, """{"errors":"Unavailable Shop"}""");
                return true;
            case FakeFault.Forbidden:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status403Forbidden, """{"errors":"User does not have access"}""");
                return true;
            case FakeFault.NotFound:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status404NotFound, """{"errors":"Not Found"}""");
                return true;
            case FakeFault.Locked:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status423Locked, """{"errors":"This shop is unavailable"}""");
                return true;
            case FakeFault.Throttled:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK,
                    """{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED","documentation":"https://shopify.dev/api/usage/rate-limits"}}],"extensions":{"cost":{"requestedQueryCost":1,"actualQueryCost":null,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":0,"restoreRate":100.0}}}}""");
                return true;
            case FakeFault.AbsurdThrottle:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK,
                    """{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}],"extensions":{"cost":{"requestedQueryCost":1000,"actualQueryCost":null,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":0,"restoreRate":1e-300}}}}""");
                return true;
            case FakeFault.NonExpiringRefused:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status403Forbidden, NonExpiringRefusedBody);
                return true;
            case FakeFault.ShopInactive:
                await FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK,
                    """{"errors":[{"message":"Shop is inactive","extensions":{"code":"SHOP_INACTIVE"}}]}""");
                return true;
            default:
                return false;
        }
    }

    private static bool IsTokenResponseFault(FakeFault fault) =>
        fault is FakeFault.MissingExpiresIn or FakeFault.AbsurdExpiresIn or FakeFault.MissingRefreshToken or FakeFault.RotateThenReset or FakeFault.RotateThenBadCharset;

    private Store? Find(string shopDomain) => _stores.TryGetValue(shopDomain, out var store) ? store : null;

    // Strict: a JSON body whose only field is the validation query (CONTRACTS.md), nothing else.
    private static async Task<bool> AsksForShopAsync(HttpRequest request)
    {
        if (request.ContentType?.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) != true)
        {
            return false;
        }

        try
        {
            using var doc = await JsonDocument.ParseAsync(request.Body);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.EnumerateObject().Count() == 1
                && doc.RootElement.TryGetProperty("query", out var query)
                && query.ValueKind == JsonValueKind.String
                && query.GetString() == ValidationQuery;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    // Shopify's docs send a form, its own library sends JSON: accept both; null when neither parses.
    private static async Task<Dictionary<string, string>?> ReadFieldsAsync(HttpRequest request)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        if (request.HasFormContentType)
        {
            foreach (var (name, value) in await request.ReadFormAsync())
            {
                fields[name] = value.ToString();
            }

            return fields;
        }

        if (request.ContentType?.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) != true)
        {
            return null;
        }

        try
        {
            using var doc = await JsonDocument.ParseAsync(request.Body);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            foreach (var property in doc.RootElement.EnumerateObject())
            {
                fields[property.Name] = property.Value.ValueKind == JsonValueKind.String
                    ? property.Value.GetString()!
                    : property.Value.GetRawText();
            }

            return fields;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string ShopBody(string name) =>
        $$$"""{"data":{"shop":{"name":"{{{JsonEncodedText.Encode(name)}}}"}},"extensions":{"cost":{{{CostBody}}}}}""";

    private static string TokenBody(string accessToken, string? refreshToken, int? expiresIn)
    {
        var body = new JsonObject { ["access_token"] = accessToken };
        if (expiresIn is { } seconds)
        {
            body["expires_in"] = seconds;
        }

        if (refreshToken is not null)
        {
            body["refresh_token"] = refreshToken;
            body["refresh_token_expires_in"] = (int)RefreshTokenLifetime.TotalSeconds;
        }

        body["scope"] = Scope;
        return body.ToJsonString();
    }

    // One store's tokens; every read and change happens under its lock so concurrent refreshes serialise.
    private sealed class Store(string shopDomain, TimeSpan accessTokenLifetime)
    {
        private readonly Lock _gate = new();
        private bool _expiring;
        private string? _accessToken;
        private DateTimeOffset _accessExpiresAt;
        private string? _refreshToken;
        private DateTimeOffset _refreshExpiresAt;
        private string? _previousRefreshToken;
        private DateTimeOffset _previousUsableUntil;
        private string? _exchangedSubject;
        private string? _replacedAccessToken;
        private DateTimeOffset _replacedAt;
        private DateTimeOffset _exchangedAt;
        private (string AccessToken, string RefreshToken) _exchangedPair;

        public string Name { get; } = shopDomain.Split('.')[0];

        public bool IsExpiring
        {
            get
            {
                lock (_gate)
                {
                    return _expiring;
                }
            }
        }

        public string? AccessToken
        {
            get
            {
                lock (_gate)
                {
                    return _accessToken;
                }
            }
        }

        public string? RefreshToken
        {
            get
            {
                lock (_gate)
                {
                    return _refreshToken;
                }
            }
        }

        public bool WasReplacedWithin(string accessToken, DateTimeOffset at, TimeSpan within)
        {
            lock (_gate)
            {
                return accessToken == _replacedAccessToken && at - _replacedAt < within;
            }
        }

        public static Store NonExpiring(string shopDomain, string accessToken, TimeSpan accessTokenLifetime) =>
            new(shopDomain, accessTokenLifetime) { _accessToken = accessToken };

        public bool Accepts(string accessToken, DateTimeOffset now)
        {
            lock (_gate)
            {
                return string.Equals(accessToken, _accessToken, StringComparison.Ordinal) && (!_expiring || now < _accessExpiresAt);
            }
        }

        public (string AccessToken, string RefreshToken) IssueFresh(DateTimeOffset now)
        {
            lock (_gate)
            {
                _previousRefreshToken = null;
                return IssueLocked(now);
            }
        }

        public (string AccessToken, string RefreshToken)? Refresh(string refreshToken, DateTimeOffset now)
        {
            lock (_gate)
            {
                if (_refreshToken is not null && refreshToken == _refreshToken && now < _refreshExpiresAt)
                {
                    // First use of the replacement: the token before it dies, this one gets the grace period.
                    _previousRefreshToken = refreshToken;
                    _previousUsableUntil = Min(now + RefreshGrace, _refreshExpiresAt);
                }
                else if (_previousRefreshToken is null || refreshToken != _previousRefreshToken || now >= _previousUsableUntil)
                {
                    return null;
                }

                // Either way a new pair replaces the newest one: only one refreshable token per app and store.
                return IssueLocked(now);
            }
        }

        public (string AccessToken, string RefreshToken)? Exchange(string subjectToken, DateTimeOffset now)
        {
            lock (_gate)
            {
                if (!_expiring && _accessToken is not null && subjectToken == _accessToken)
                {
                    // Irreversible: the non-expiring token is replaced, so GraphQL with it now gets 401.
                    _exchangedSubject = subjectToken;
                    _exchangedAt = now;
                    _previousRefreshToken = null;
                    _exchangedPair = IssueLocked(now);
                    return _exchangedPair;
                }

                // A retry after a lost answer gets the same pair again.
                if (_exchangedSubject is not null && subjectToken == _exchangedSubject && now - _exchangedAt < ExchangeRetryWindow)
                {
                    return _exchangedPair;
                }

                return null;
            }
        }

        public void Seed(string accessToken, string refreshToken, DateTimeOffset now)
        {
            lock (_gate)
            {
                IssueLocked(now);
                _accessToken = accessToken;
                _refreshToken = refreshToken;
            }
        }

        public void RevokeAccessToken()
        {
            lock (_gate)
            {
                _accessToken = null;
            }
        }

        public void RevokeRefreshToken()
        {
            lock (_gate)
            {
                _refreshToken = null;
                _previousRefreshToken = null;
            }
        }

        private (string AccessToken, string RefreshToken) IssueLocked(DateTimeOffset now)
        {
            _replacedAccessToken = _accessToken;
            _replacedAt = now;
            _expiring = true;
            _accessToken = "shpat_" + FakeHttp.NewHex();
            _accessExpiresAt = now + accessTokenLifetime;
            _refreshToken = "shprt_" + FakeHttp.NewHex();
            _refreshExpiresAt = now + RefreshTokenLifetime;
            return (_accessToken, _refreshToken);
        }

        private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;
    }
}
