using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>One POST the main application's webhook endpoint received.</summary>
public sealed record WebhookAttempt(DateTimeOffset At, string Id, string Timestamp, string Signature, byte[] Body, string PathAndQuery, string Headers)
{
    public HeaderDictionary WebhookHeaders() => new()
    {
        [ReauthWebhook.IdHeader] = Id, [ReauthWebhook.TimestampHeader] = Timestamp, [ReauthWebhook.SignatureHeader] = Signature,
    };
}

/// <summary>The main application's webhook endpoint on loopback: answers 503 (or as told) to the first attempts, or 401 to all.</summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private LoopbackHttp? _server;

    public ConcurrentQueue<WebhookAttempt> Attempts { get; } = new();

    public string Url => _server!.BaseUrl + "/";

    public static async Task<WebhookReceiver> StartAsync(int failFirst, bool refuse = false, int failWith = 503, int? retryAfterSeconds = null)
    {
        var receiver = new WebhookReceiver();
        receiver._server = await LoopbackHttp.StartAsync(app => app.MapPost("/{**path}", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            var headers = context.Request.Headers;
            receiver.Attempts.Enqueue(new WebhookAttempt(DateTimeOffset.UtcNow, headers[ReauthWebhook.IdHeader].ToString(),
                headers[ReauthWebhook.TimestampHeader].ToString(), headers[ReauthWebhook.SignatureHeader].ToString(), body.ToArray(),
                context.Request.Path + context.Request.QueryString, string.Join('\n', headers.Select(h => $"{h.Key}: {h.Value}"))));
            context.Response.StatusCode = refuse ? 401 : receiver.Attempts.Count <= failFirst ? failWith : 204;
            if (retryAfterSeconds is { } seconds && context.Response.StatusCode == failWith)
            {
                context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
        }));
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
