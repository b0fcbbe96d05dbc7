using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Polly.Timeout;
using TokenRefresh.Settings;

namespace TokenRefresh;

/// <summary>An account only its user can bring back: flagged needs_reauth, or switched off. Never a token.</summary>
public sealed record ReauthEvent(
    [property: JsonPropertyName("event")] string Event,
    [property: JsonPropertyName("platform")] string Platform,
    [property: JsonPropertyName("account_id")] string AccountId,
    [property: JsonPropertyName("shop_domain")] string? ShopDomain,
    [property: JsonPropertyName("reason")] string? Reason,
    [property: JsonPropertyName("at")] DateTimeOffset At);

/// <summary>
/// REAUTH_WEBHOOK_URL: a cycle's <see cref="ReauthEvent"/>s posted as one JSON body (100 events at most), signed as
/// Standard Webhooks sign (so a receiver verifies with a ready library), and retried through the resilience pipeline on a
/// network error, a timeout, a 408, a 429 or a 5xx, after the Retry-After given or with backoff. Every attempt carries
/// the same webhook-id, so the receiver can ignore a repeat. All of a cycle's deliveries share one budget
/// (<see cref="Budget"/>), and stop when the process does.
/// </summary>
public sealed partial class ReauthWebhook(HttpClient http, WebhookSettings settings, TimeProvider time, ILogger<ReauthWebhook> logger)
{
    public const string IdHeader = "webhook-id";
    public const string TimestampHeader = "webhook-timestamp";
    public const string SignatureHeader = "webhook-signature";
    public const int BatchSize = 100;

    /// <summary>How long a cycle's deliveries may take in all: about two batches' five attempts, well inside a stop's grace.</summary>
    public static readonly TimeSpan Budget = TimeSpan.FromSeconds(30);

    /// <summary>The first wait before another attempt, doubled each time (1, 2, 4 and 8 s), unless Retry-After says.</summary>
    public static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(1);

    /// <summary>Attempts after the first.</summary>
    public const int Retries = 4;

    /// <summary>
    /// Standard Webhooks' signature: "v1," and the base64 HMAC-SHA256, keyed with <paramref name="key"/> (the secret's
    /// bytes: decoded from base64 after "whsec_"), of "{id}.{timestamp}.{body}".
    /// </summary>
    public static string Sign(ReadOnlySpan<byte> key, string id, string timestamp, ReadOnlySpan<byte> body)
    {
        var prefix = Encoding.UTF8.GetBytes($"{id}.{timestamp}.");
        var signed = new byte[prefix.Length + body.Length];
        prefix.CopyTo(signed, 0);
        body.CopyTo(signed.AsSpan(prefix.Length));
        return "v1," + Convert.ToBase64String(HMACSHA256.HashData(key, signed));
    }

    /// <summary>
    /// Delivers the events, if a webhook is configured. Never throws: the view and NOTIFY stay the record. Once a batch
    /// has used its attempts, or the budget or <paramref name="stopping"/> ends, the rest are logged as not delivered, as
    /// are the cycle's events <paramref name="beyond"/> those it kept.
    /// </summary>
    public async Task DeliverAsync(IReadOnlyList<ReauthEvent> events, int beyond = 0, CancellationToken stopping = default)
    {
        if (settings is not { Url: { } url, Key: { } key } || events.Count == 0)
        {
            return;
        }

        if (beyond > 0)
        {
            Log.NotDelivered(logger, beyond, url.Host, $"more than {events.Count} in one cycle");
        }

        using var outOfTime = new CancellationTokenSource(Budget, time);
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(stopping, outOfTime.Token);
        var batches = events.Chunk(BatchSize).ToList();
        for (var i = 0; i < batches.Count; i++)
        {
            string? problem;
            try
            {
                problem = await DeliverBatchAsync(url, key, batches[i], budget.Token);
            }
            catch (OperationCanceledException)
            {
                problem = stopping.IsCancellationRequested ? "the process is stopping" : $"out of its {Budget.TotalSeconds} s";
            }
            catch (Exception e)
            {
                // Whatever it is, a cycle's end is not the place to fail: said, with its type only (no URL, no body).
                problem = $"unexpected {e.GetType().Name}";
            }

            if (problem is not null)
            {
                Log.NotDelivered(logger, batches.Skip(i).Sum(b => b.Length), url.Host, problem);
                return;
            }
        }
    }

    /// <returns>Null once delivered; else why not.</returns>
    private async Task<string?> DeliverBatchAsync(Uri url, byte[] key, ReauthEvent[] batch, CancellationToken budget)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new { events = batch });
        var id = $"msg_{Guid.NewGuid():N}";
        var timestamp = time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new("application/json");
        request.Headers.Add(IdHeader, id);
        request.Headers.Add(TimestampHeader, timestamp);
        request.Headers.Add(SignatureHeader, Sign(key, id, timestamp, body));
        request.Options.Set(EventsKey, batch.Length);
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, budget);
            if (response.IsSuccessStatusCode)
            {
                Log.Delivered(logger, batch.Length, url.Host, Attempts(request));
                return null;
            }

            // A 4xx other than 408 and 429 is not tried again: the receiver refused it (a wrong signature, a wrong address).
            return $"HTTP {(int)response.StatusCode}, after {Attempts(request)} attempts";
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutRejectedException && !budget.IsCancellationRequested)
        {
            return $"{Problem(e)}, after {Attempts(request)} attempts";
        }
    }

    private static partial class Log
    {
        [LoggerMessage(701, LogLevel.Information, "Re-authorisation webhook: {Count} events delivered to {Host} (attempt {Attempt})")]
        public static partial void Delivered(ILogger logger, int count, string host, int attempt);

        [LoggerMessage(702, LogLevel.Warning, "Re-authorisation webhook: {Count} events to {Host} failed ({Problem}); trying again in {Seconds} s")]
        public static partial void Retrying(ILogger logger, int count, string host, string problem, double seconds);

        [LoggerMessage(703, LogLevel.Error, "Re-authorisation webhook: {Count} events not delivered to {Host} ({Problem}); they stay in token_refresh_needs_reauth and were announced by NOTIFY")]
        public static partial void NotDelivered(ILogger logger, int count, string host, string problem);
    }
}
