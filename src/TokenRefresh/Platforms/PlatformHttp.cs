using System.Globalization;
using System.Net;
using System.Text.Json;
using Polly.Timeout;

namespace TokenRefresh.Platforms;

public enum CallStatus
{
    /// <summary>The platform answered as hoped.</summary>
    Ok,

    /// <summary>Proves nothing about the token: try again next cycle (network, timeout, 429, 5xx, malformed).</summary>
    Transient,

    /// <summary>Will not change by itself: revoked grant, bad client, unavailable shop.</summary>
    Permanent,

    /// <summary>The platform definitively rejected the token (a validation's 401).</summary>
    Rejected,
}

/// <summary>
/// A platform call's classified result. <see cref="Reason"/> is short and never holds a token.
/// <see cref="OutcomeUnknown"/>: the request may have been processed although no usable answer came back.
/// </summary>
internal sealed record CallResult<T>(CallStatus Status, T? Value = default, string? Reason = null, TimeSpan? RetryAfter = null, bool OutcomeUnknown = false)
{
    /// <summary>What went wrong unexpectedly once the request may have left (for the log line); null otherwise.</summary>
    public Exception? Error { get; init; }

    /// <summary>The platform's daily quota, when its answer gave it in the headers its description names.</summary>
    public DailyQuota? Quota { get; init; }

    /// <summary>
    /// The platform's credentials were refused (a wrong client id or secret): a configuration fault, not the account's.
    /// The platform stops for the cycle instead of every account backing off.
    /// </summary>
    public bool CredentialsRefused => Reason is "invalid_client" || (Reason is "forbidden" && Status == CallStatus.Permanent);

    /// <summary>Anything unexpected once a request may have been sent: its outcome is unknown (the platform may have rotated).</summary>
    public static CallResult<T> Unexpected(Exception error) =>
        new(CallStatus.Transient, Reason: "unexpected_error", OutcomeUnknown: true) { Error = error };

    public static CallResult<T> Transient(string reason, TimeSpan? retryAfter = null, bool outcomeUnknown = false) =>
        new(CallStatus.Transient, Reason: reason, RetryAfter: retryAfter, OutcomeUnknown: outcomeUnknown);

    public static CallResult<T> Permanent(string reason) => new(CallStatus.Permanent, Reason: reason);

    /// <summary>The call failed before reaching the platform, or after it without an answer.</summary>
    public static CallResult<T> From(CallFailure failure) => Transient(failure.Reason, outcomeUnknown: failure.OutcomeUnknown);
}

/// <summary>Requests a platform allows per rolling 24 hours, and how many of them remain.</summary>
internal sealed record DailyQuota(int PerDay, int Remaining);

/// <summary>The response headers in which a platform gives its daily quota.</summary>
internal sealed record QuotaHeaders(string PerDay, string Remaining);

/// <summary>A call that produced no answer: why, and whether the platform may have processed it anyway.</summary>
internal sealed record CallFailure(string Reason, bool OutcomeUnknown);

/// <summary>A platform's answer: the status, the whole body, and Retry-After and the daily quota when given.</summary>
internal sealed record PlatformResponse(HttpStatusCode Status, string Body, TimeSpan? RetryAfter, DailyQuota? Quota = null)
{
    // The body of a token response holds both tokens: never print it.
    public override string ToString() => $"PlatformResponse {{ Status = {Code}, RetryAfter = {RetryAfter} }}";

    public int Code => (int)Status;

    /// <summary>The body's root object, or null when the body is not a JSON object.</summary>
    public JsonElement? Json
    {
        get
        {
            try
            {
                using var document = JsonDocument.Parse(Body);
                return document.RootElement.ValueKind == JsonValueKind.Object ? document.RootElement.Clone() : null;
            }
            catch (JsonException)
            {
                return null;
            }
        }
    }

    /// <summary>The OAuth2 <c>error</c> code of an error body, e.g. invalid_grant; null when there is none.</summary>
    public string? OAuthError => Json is { } root && root.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.String
        ? error.GetString()
        : null;
}

internal static class PlatformHttp
{
    /// <summary>The longest wait a platform may ask for: a larger or garbled Retry-After or throttle figure is taken as this.</summary>
    public static readonly TimeSpan LongestWait = TimeSpan.FromHours(1);

    /// <summary>
    /// Sends a request and classifies the answer. Whatever else happens once the request may have left (a charset it
    /// cannot decode, arithmetic on a header, a bug) comes back as an unknown outcome, never as an exception.
    /// </summary>
    public static async Task<CallResult<T>> CallAsync<T>(
        HttpClient http, HttpRequestMessage request, Func<PlatformResponse, CallResult<T>> classify, CancellationToken cancellationToken,
        QuotaHeaders? quotaHeaders = null)
    {
        try
        {
            var (response, failure) = await SendAsync(http, request, cancellationToken, quotaHeaders);
            return response is null ? CallResult<T>.From(failure!)
                : response.Quota is { } quota ? classify(response) with { Quota = quota }
                : classify(response);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            return CallResult<T>.Unexpected(e);
        }
    }

    /// <summary><paramref name="seconds"/> as a wait within [0, <see cref="LongestWait"/>]; null for NaN.</summary>
    public static TimeSpan? Wait(double seconds) =>
        double.IsNaN(seconds) ? null : seconds <= 0 ? TimeSpan.Zero : seconds >= LongestWait.TotalSeconds ? LongestWait : TimeSpan.FromSeconds(seconds);

    /// <summary>Sends a request and reads the whole answer. Network faults and timeouts come back as a reason, not an exception.</summary>
    public static async Task<(PlatformResponse? Response, CallFailure? Failure)> SendAsync(
        HttpClient http, HttpRequestMessage request, CancellationToken cancellationToken, QuotaHeaders? quota = null)
    {
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            return (new PlatformResponse(response.StatusCode, body, RetryAfter(response), quota is null ? null : Quota(response, quota)), null);
        }
        catch (TimeoutRejectedException)
        {
            return (null, new CallFailure("timeout", OutcomeUnknown: true));
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, new CallFailure("timeout", OutcomeUnknown: true));
        }
        catch (HttpRequestException e) when (e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError
            or HttpRequestError.SecureConnectionError or HttpRequestError.ProxyTunnelError)
        {
            // No connection was made: the request never reached the platform.
            return (null, new CallFailure("connection_failed", OutcomeUnknown: false));
        }
        catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConfigurationLimitExceeded)
        {
            return (null, new CallFailure("response_too_large", OutcomeUnknown: true));
        }
        catch (HttpRequestException)
        {
            return (null, new CallFailure("network_error", OutcomeUnknown: true));
        }
        catch (IOException)
        {
            return (null, new CallFailure("network_error", OutcomeUnknown: true));
        }
    }

    /// <summary>
    /// The transient result for an HTTP status that proves nothing about the token, or null. A 5xx may come
    /// after the platform did the work (a rotation among it), so its outcome is unknown; a 429 was refused.
    /// </summary>
    public static CallResult<T>? Transient<T>(PlatformResponse response) => response.Code switch
    {
        // No client follows redirects: the token or secret would go wherever the Location points. The platforms never redirect these calls.
        >= 300 and < 400 => CallResult<T>.Transient($"redirect_{response.Code}"),
        429 => CallResult<T>.Transient("rate_limited", response.RetryAfter),
        408 => CallResult<T>.Transient("timeout", response.RetryAfter, outcomeUnknown: true),
        >= 500 => CallResult<T>.Transient($"server_error_{response.Code}", response.RetryAfter, outcomeUnknown: true),
        _ => null,
    };

    /// <summary>An OAuth error code plain enough to go into a reason, and so into logs and the database: short, letters, digits and underscores.</summary>
    public static bool IsPlainErrorCode(string error) => error.Length <= 40 && error.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    private static DailyQuota? Quota(HttpResponseMessage response, QuotaHeaders headers) =>
        Header(response, headers.PerDay) is { } perDay && Header(response, headers.Remaining) is { } remaining ? new DailyQuota(perDay, remaining) : null;

    private static int? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values)
        && int.TryParse(values.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : null;

    private static TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        if (response.Headers.RetryAfter is { Delta: { } delta })
        {
            return Wait(delta.TotalSeconds);
        }

        if (response.Headers.RetryAfter is { Date: { } date })
        {
            return Wait((date - DateTimeOffset.UtcNow).TotalSeconds);
        }

        // Some platforms send fractional seconds ("2.0"), which the typed header parser rejects.
        return response.Headers.TryGetValues("Retry-After", out var values)
            && double.TryParse(values.FirstOrDefault(), NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
            ? Wait(seconds)
            : null;
    }
}
