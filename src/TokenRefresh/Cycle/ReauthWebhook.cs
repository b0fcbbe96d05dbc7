using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
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
/// REAUTH_WEBHOOK_URL: a cycle's <see cref="ReauthEvent"/>s posted as one JSON body (100 events at most), signed with
/// HMAC-SHA256 over "{timestamp}.{body}" with REAUTH_WEBHOOK_SECRET, and retried with backoff on a network error, a
/// timeout, a 408, a 429 or a 5xx. The same delivery id on every attempt lets the receiver ignore a repeat. All of a
/// cycle's deliveries share one budget (<see cref="Budget"/>), and stop when the process does.
/// </summary>
public sealed partial class ReauthWebhook(HttpClient http, WebhookSettings settings, TimeProvider time, ILogger<ReauthWebhook> logger)
{
    public const string SignatureHeader = "X-TokenRefresh-Signature";
    public const string TimestampHeader = "X-TokenRefresh-Timestamp";
    public const string DeliveryHeader = "X-TokenRefresh-Delivery";
    public const int BatchSize = 100;

    /// <summary>How long a cycle's deliveries may take in all: about two batches' five attempts, well inside a stop's grace.</summary>
    public static readonly TimeSpan Budget = TimeSpan.FromSeconds(30);

    /// <summary>The waits before the 2nd to 5th attempts.</summary>
    public static readonly IReadOnlyList<TimeSpan> Backoff = [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(8)];

    /// <summary>The signature a receiver computes to check a request: "sha256=" and the lower-case hex HMAC.</summary>
    public static string Sign(string secret, string timestamp, ReadOnlySpan<byte> body)
    {
        var signed = new byte[Encoding.UTF8.GetByteCount(timestamp) + 1 + body.Length];
        var at = Encoding.UTF8.GetBytes(timestamp, signed);
        signed[at] = (byte)'.';
        body.CopyTo(signed.AsSpan(at + 1));
        return "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed));
    }

    /// <summary>
    /// Delivers the events, if a webhook is configured. Never throws: the view and NOTIFY stay the record. Once a batch
    /// has used its attempts, or the budget or <paramref name="stopping"/> ends, the rest are logged as not delivered.
    /// </summary>
    public async Task DeliverAsync(IReadOnlyList<ReauthEvent> events, CancellationToken stopping = default)
    {
        if (settings is not { Url: { } url, Secret: { } secret } || events.Count == 0)
        {
            return;
        }

        using var outOfTime = new CancellationTokenSource(Budget, time);
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(stopping, outOfTime.Token);
        var batches = events.Chunk(BatchSize).ToList();
        for (var i = 0; i < batches.Count; i++)
        {
            string? problem;
            try
            {
                problem = await DeliverBatchAsync(url, secret, batches[i], budget.Token);
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
    private async Task<string?> DeliverBatchAsync(Uri url, string secret, ReauthEvent[] batch, CancellationToken budget)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new { events = batch });
        var delivery = Guid.NewGuid().ToString();
        for (var attempt = 1; ; attempt++)
        {
            var timestamp = time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new("application/json");
            request.Headers.Add(TimestampHeader, timestamp);
            request.Headers.Add(SignatureHeader, Sign(secret, timestamp, body));
            request.Headers.Add(DeliveryHeader, delivery);
            string problem;
            try
            {
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, budget);
                var status = (int)response.StatusCode;
                if (response.IsSuccessStatusCode)
                {
                    Log.Delivered(logger, batch.Length, url.Host, attempt);
                    return null;
                }

                problem = $"HTTP {status}";
                if (status is not (408 or 429) && status < 500)
                {
                    // The receiver refused it (a wrong signature, a wrong address): another attempt would be refused too.
                    return $"{problem}, after {attempt} attempts";
                }
            }
            catch (HttpRequestException e)
            {
                problem = e.HttpRequestError == HttpRequestError.Unknown ? "network error" : e.HttpRequestError.ToString();
            }
            catch (OperationCanceledException) when (!budget.IsCancellationRequested)
            {
                problem = "timeout";
            }

            if (attempt > Backoff.Count)
            {
                return $"{problem}, after {attempt} attempts";
            }

            Log.Retrying(logger, batch.Length, url.Host, problem, Backoff[attempt - 1].TotalSeconds);
            await Task.Delay(Backoff[attempt - 1], time, budget);
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
