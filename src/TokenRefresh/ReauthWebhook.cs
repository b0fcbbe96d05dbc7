using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace TokenRefresh;

/// <summary>An account only its user can bring back: flagged needs_reauth, or a Shopify store switched off. Never a token.</summary>
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
/// timeout, a 408, a 429 or a 5xx. The same delivery id on every attempt lets the receiver ignore a repeat.
/// </summary>
public sealed partial class ReauthWebhook(HttpClient http, IOptions<TokenRefreshOptions> options, TimeProvider time, ILogger<ReauthWebhook> logger)
{
    public const string SignatureHeader = "X-TokenRefresh-Signature";
    public const string TimestampHeader = "X-TokenRefresh-Timestamp";
    public const string DeliveryHeader = "X-TokenRefresh-Delivery";
    public const int BatchSize = 100;

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

    /// <summary>Delivers the events, if a webhook is configured. Never throws: the view and NOTIFY stay the record.</summary>
    public async Task DeliverAsync(IReadOnlyList<ReauthEvent> events)
    {
        if (options.Value.ReauthWebhookUrl is not { } url || events.Count == 0)
        {
            return;
        }

        foreach (var batch in events.Chunk(BatchSize))
        {
            await DeliverBatchAsync(url, batch);
        }
    }

    private async Task DeliverBatchAsync(Uri url, ReauthEvent[] batch)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new { events = batch });
        var delivery = Guid.NewGuid().ToString();
        for (var attempt = 1; ; attempt++)
        {
            var timestamp = time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new("application/json");
            request.Headers.Add(TimestampHeader, timestamp);
            request.Headers.Add(SignatureHeader, Sign(options.Value.ReauthWebhookSecret!, timestamp, body));
            request.Headers.Add(DeliveryHeader, delivery);
            string problem;
            try
            {
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                var status = (int)response.StatusCode;
                if (response.IsSuccessStatusCode)
                {
                    Log.Delivered(logger, batch.Length, url.Host, attempt);
                    return;
                }

                problem = $"HTTP {status}";
                if (status is not (408 or 429) && status < 500)
                {
                    // The receiver refused it (a wrong signature, a wrong address): another attempt would be refused too.
                    Log.NotDelivered(logger, batch.Length, url.Host, attempt, problem);
                    return;
                }
            }
            catch (HttpRequestException e)
            {
                problem = e.HttpRequestError == HttpRequestError.Unknown ? "network error" : e.HttpRequestError.ToString();
            }
            catch (OperationCanceledException)
            {
                problem = "timeout";
            }

            if (attempt > Backoff.Count)
            {
                Log.NotDelivered(logger, batch.Length, url.Host, attempt, problem);
                return;
            }

            Log.Retrying(logger, batch.Length, url.Host, problem, Backoff[attempt - 1].TotalSeconds);
            await Task.Delay(Backoff[attempt - 1], time);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(701, LogLevel.Information, "Re-authorisation webhook: {Count} events delivered to {Host} (attempt {Attempt})")]
        public static partial void Delivered(ILogger logger, int count, string host, int attempt);

        [LoggerMessage(702, LogLevel.Warning, "Re-authorisation webhook: {Count} events to {Host} failed ({Problem}); trying again in {Seconds} s")]
        public static partial void Retrying(ILogger logger, int count, string host, string problem, double seconds);

        [LoggerMessage(703, LogLevel.Error, "Re-authorisation webhook: {Count} events not delivered to {Host} after {Attempts} attempts ({Problem}); they stay in token_refresh_needs_reauth and were announced by NOTIFY")]
        public static partial void NotDelivered(ILogger logger, int count, string host, int attempts, string problem);
    }
}
