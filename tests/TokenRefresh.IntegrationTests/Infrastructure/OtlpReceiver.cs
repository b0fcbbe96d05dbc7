using System.Net;
using System.Net.Sockets;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>An OpenTelemetry collector stand-in on loopback (OTLP over HTTP): keeps every request's path and body.</summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly List<(string Path, byte[] Body)> _received = [];
    private readonly Task _serving;

    public OtlpReceiver()
    {
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            Endpoint = $"http://127.0.0.1:{((IPEndPoint)probe.LocalEndpoint).Port}";
        }

        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _serving = Task.Run(ServeAsync);
    }

    /// <summary>For OTEL_EXPORTER_OTLP_ENDPOINT (with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf).</summary>
    public string Endpoint { get; }

    public IReadOnlyList<(string Path, byte[] Body)> Received
    {
        get { lock (_received) { return [.. _received]; } }
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
            {
                return;
            }

            using var body = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(body);
            lock (_received)
            {
                _received.Add((context.Request.Url!.AbsolutePath, body.ToArray()));
            }

            context.Response.StatusCode = 200;
            context.Response.Close();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        await _serving;
        _listener.Close();
    }
}
