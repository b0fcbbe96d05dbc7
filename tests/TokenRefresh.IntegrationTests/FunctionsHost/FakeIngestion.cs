using System.IO.Compression;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests.FunctionsHost;

/// <summary>
/// Application Insights' ingestion endpoint on loopback: what the worker's SDK (v2/track) and the Azure Monitor
/// exporter (v2.1/track) send, as the envelopes they post (newline-delimited JSON, gzip or not).
/// </summary>
public sealed class FakeIngestion : IAsyncDisposable
{
    private LoopbackHttp? _server;
    private readonly Channel<JsonElement> _arrived = Channel.CreateUnbounded<JsonElement>();
    private readonly List<JsonElement> _envelopes = [];

    public string ConnectionString { get; private set; } = "";

    public IReadOnlyList<JsonElement> Envelopes
    {
        get
        {
            lock (_envelopes)
            {
                return [.. _envelopes];
            }
        }
    }

    public static async Task<FakeIngestion> StartAsync()
    {
        var ingestion = new FakeIngestion();
        ingestion._server = await LoopbackHttp.StartAsync(app =>
        {
            app.MapPost("/v2/track", ingestion.TrackAsync);
            app.MapPost("/v2.1/track", ingestion.TrackAsync);
            // Anything else (Live Metrics, profiler) is refused, so nothing of it is mistaken for telemetry.
            app.MapFallback(context => { context.Response.StatusCode = 404; return Task.CompletedTask; });
        });
        var address = ingestion._server.BaseUrl;
        ingestion.ConnectionString = $"InstrumentationKey=00000000-0000-4000-8000-000000000001;IngestionEndpoint={address}/;LiveEndpoint={address}/";
        return ingestion;
    }

    /// <summary>Waits until an envelope that matches has arrived (or has already).</summary>
    public async Task<JsonElement> WaitForAsync(Func<JsonElement, bool> match, TimeSpan timeout)
    {
        if (Envelopes.FirstOrDefault(match) is { ValueKind: not JsonValueKind.Undefined } already)
        {
            return already;
        }

        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await foreach (var envelope in _arrived.Reader.ReadAllAsync(cancel.Token))
            {
                if (match(envelope))
                {
                    return envelope;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        throw new TimeoutException($"no such envelope within {timeout.TotalSeconds} s; {Envelopes.Count} arrived: " +
            string.Join(", ", Envelopes.Select(e => e.GetProperty("name").GetString()).Distinct()));
    }

    private async Task TrackAsync(HttpContext context)
    {
        Stream body = context.Request.Body;
        if (context.Request.Headers.ContentEncoding.ToString().Contains("gzip", StringComparison.OrdinalIgnoreCase))
        {
            body = new GZipStream(body, CompressionMode.Decompress);
        }

        using var reader = new StreamReader(body);
        var count = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Trim().Length == 0)
            {
                continue;
            }

            var envelope = JsonDocument.Parse(line).RootElement.Clone();
            lock (_envelopes)
            {
                _envelopes.Add(envelope);
            }

            _arrived.Writer.TryWrite(envelope);
            count++;
        }

        await context.Response.WriteAsJsonAsync(new { itemsReceived = count, itemsAccepted = count, errors = Array.Empty<object>() });
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
