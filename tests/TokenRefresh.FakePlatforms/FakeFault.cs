using System.Collections.Concurrent;

namespace TokenRefresh.FakePlatforms;

/// <summary>What a fake platform does instead of answering normally (see CONTRACTS.md for the real bodies).</summary>
public enum FakeFault
{
    /// <summary>Answer normally.</summary>
    None,
    /// <summary>500 {"error":"Server Error"} (Etsy) or 500 {"errors":"An unexpected error occurred"} (Shopify).</summary>
    ServerError,
    /// <summary>400 {"error":"invalid_grant","error_description":"refresh_token is revoked"}.</summary>
    InvalidGrant,
    /// <summary>401 {"error":"invalid_client",...}.</summary>
    InvalidClient,
    /// <summary>429 with Retry-After ("2" for Etsy, "2.0" for Shopify).</summary>
    RateLimited,
    /// <summary>Never answers: waits until the client disconnects, the server stops, or 5 minutes.</summary>
    Hang,
    /// <summary>Aborts the TCP connection without a response.</summary>
    ResetConnection,
    /// <summary>307 to https://attacker.example.com/ (the platforms never redirect these calls).</summary>
    Redirect,
    /// <summary>200 text/html "&lt;html&gt;oops&lt;/html&gt;".</summary>
    NotJson,
    /// <summary>200 application/json with the first half of a valid body (no rotation happens).</summary>
    TruncatedJson,
    /// <summary>200 token response without expires_in; a real rotation happens.</summary>
    MissingExpiresIn,
    /// <summary>200 token response with expires_in = -30; a real rotation happens.</summary>
    AbsurdExpiresIn,
    /// <summary>200 token response without refresh_token; no rotation happens.</summary>
    MissingRefreshToken,
    /// <summary>A real rotation happens, then the connection is aborted: "the answer was lost".</summary>
    RotateThenReset,
    /// <summary>Shopify GraphQL: 401 invalid API key or access token (Etsy: 401 invalid_token).</summary>
    Unauthorized,
    /// <summary>402 {"errors":"Unavailable Shop"}.</summary>
    PaymentRequired,
    /// <summary>403 {"errors":"User does not have access"}.</summary>
    Forbidden,
    /// <summary>404 {"errors":"Not Found"}.</summary>
    NotFound,
    /// <summary>423 {"errors":"This shop is unavailable"}.</summary>
    Locked,
    /// <summary>Shopify GraphQL: HTTP 200 with errors code THROTTLED (Etsy: same as RateLimited).</summary>
    Throttled,
    /// <summary>Shopify GraphQL: HTTP 200 with errors code SHOP_INACTIVE (Etsy: same as Locked).</summary>
    ShopInactive,
    /// <summary>A real rotation happens, then a 200 whose Content-Type names a charset no client can decode.</summary>
    RotateThenBadCharset,
    /// <summary>429 with Retry-After: 1e308.</summary>
    HugeRetryAfter,
    /// <summary>Shopify GraphQL: THROTTLED with a restoreRate of 1e-300 (a wait that overflows any clock).</summary>
    AbsurdThrottle,
    /// <summary>Shopify, GraphQL and OAuth: 403 {"errors":"Non-expiring access tokens are no longer accepted for the Admin API. ..."}.</summary>
    NonExpiringRefused,
}

// Faults per key, each with how many requests it still applies to (int.MaxValue = until changed).
internal sealed class FaultTable(StringComparer comparer)
{
    private readonly ConcurrentDictionary<string, (FakeFault Fault, int Remaining)> _faults = new(comparer);

    public void Set(string key, FakeFault fault, int times)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        if (!Enum.IsDefined(fault))
        {
            throw new ArgumentOutOfRangeException(nameof(fault));
        }

        if (fault == FakeFault.None || times <= 0)
        {
            _faults.TryRemove(key, out _);
        }
        else
        {
            _faults[key] = (fault, times);
        }
    }

    // The fault for this request, using up one of its times; a fault that does not apply to this
    // kind of request (appliesTo false) is neither returned nor used up, so it waits for one it fits.
    public FakeFault Take(string key, Func<FakeFault, bool> appliesTo)
    {
        while (_faults.TryGetValue(key, out var entry))
        {
            if (!appliesTo(entry.Fault))
            {
                return FakeFault.None;
            }

            if (entry.Remaining == int.MaxValue)
            {
                return entry.Fault;
            }

            // Compare-and-swap so that concurrent requests use up exactly `times` faults.
            var taken = entry.Remaining <= 1
                ? _faults.TryRemove(KeyValuePair.Create(key, entry))
                : _faults.TryUpdate(key, (entry.Fault, entry.Remaining - 1), entry);
            if (taken)
            {
                return entry.Fault;
            }
        }

        return FakeFault.None;
    }
}

// The refresh tokens each request carried: a second send while the first is still being handled, or after the platform
// had already used the token for a new pair, is what makes a platform revoke a grant.
internal sealed class SendLedger
{
    private readonly ConcurrentDictionary<string, int> _inFlight = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<(DateTimeOffset At, string RefreshToken)> _sentTwice = new();
    private readonly ConcurrentDictionary<string, DateTimeOffset> _firstSentAt = new(StringComparer.Ordinal);

    public IReadOnlyCollection<(DateTimeOffset At, string RefreshToken)> SentTwice => _sentTwice.ToArray();

    /// <summary>When a request first carried <paramref name="refreshToken"/>: a killed process's request in flight, for instance.</summary>
    public DateTimeOffset? FirstSentAt(string refreshToken) => _firstSentAt.TryGetValue(refreshToken, out var at) ? at : null;

    /// <summary>Answers a request carrying <paramref name="refreshToken"/>; <paramref name="usedUp"/>: the platform already rotated it.</summary>
    public async Task HandleAsync(string refreshToken, bool usedUp, Func<Task> answer)
    {
        _firstSentAt.TryAdd(refreshToken, DateTimeOffset.UtcNow);
        if (_inFlight.AddOrUpdate(refreshToken, 1, static (_, n) => n + 1) > 1 || usedUp)
        {
            _sentTwice.Enqueue((DateTimeOffset.UtcNow, refreshToken));
        }

        try
        {
            await answer();
        }
        finally
        {
            if (_inFlight.AddOrUpdate(refreshToken, 0, static (_, n) => n - 1) <= 0)
            {
                _inFlight.TryRemove(KeyValuePair.Create(refreshToken, 0));
            }
        }
    }
}
