using System.IO.Compression;
using System.Net;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.IntegrationTests.FunctionsHost;

/// <summary>
/// Application Insights' ingestion endpoint on loopback: what the worker's SDK (v2/track) and the Azure Monitor
/// exporter (v2.1/track) send, as the envelopes they post (newline-delimited JSON, gzip or not).
/// </summary>
public sealed class FakeIngestion : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Channel<JsonElement> _arrived = Channel.CreateUnbounded<JsonElement>();
    private readonly List<JsonElement> _envelopes = [];

    private FakeIngestion(WebApplication app) => _app = app;

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
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var ingestion = new FakeIngestion(app);
        app.MapPost("/v2/track", ingestion.TrackAsync);
        app.MapPost("/v2.1/track", ingestion.TrackAsync);
        // Anything else (Live Metrics, profiler) is refused, so nothing of it is mistaken for telemetry.
        app.MapFallback(context => { context.Response.StatusCode = 404; return Task.CompletedTask; });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
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
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
