using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Http;
using TokenRefresh.FakePlatforms;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// The platforms as production reaches them: https://api.etsy.com and https://{name}.myshopify.com, their names
/// resolved to the loopback fakes, their certificate issued by a CA made for this test run. Added to the service's
/// own primary handler (redirects off, as production builds it) as a DNS and a trust root, nothing else: URL
/// building, SNI, certificate and host-name validation are the real ones. Every host the service connects to is
/// kept; any other name does not resolve.
/// </summary>
public sealed class PlatformNetwork(int httpsPort)
{
    private readonly ConcurrentQueue<string> _connections = new();
    private readonly ConcurrentDictionary<TrackedStream, string> _open = new();
    private int _peakOpenToStores;

    /// <summary>Every host:port the service opened a connection to (or tried to), in order.</summary>
    public IReadOnlyCollection<string> Connections => _connections.ToArray();

    /// <summary>The host:port of every connection the service holds open now (idle in its pool or in use).</summary>
    public IReadOnlyCollection<string> OpenConnections => _open.Values.ToArray();

    /// <summary>The most connections to stores (*.myshopify.com) the service held open at once.</summary>
    public int PeakOpenToStores => Volatile.Read(ref _peakOpenToStores);

    public void Apply(HttpMessageHandlerBuilder builder) => Apply(builder.PrimaryHandler as SocketsHttpHandler
        ?? throw new InvalidOperationException($"The service's primary handler is {builder.PrimaryHandler.GetType().Name}, not the SocketsHttpHandler production builds."));

    public void Apply(SocketsHttpHandler handler)
    {
        handler.ConnectCallback = ConnectAsync;
        handler.SslOptions.CertificateChainPolicy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            CustomTrustStore = { TestCertificates.Authority },
            RevocationMode = X509RevocationMode.NoCheck,
        };
    }

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var (host, port) = (context.DnsEndPoint.Host, context.DnsEndPoint.Port);
        _connections.Enqueue($"{host}:{port}");
        var target = PlatformProxy.IsPlatformHost(host) && port == 443 ? new IPEndPoint(IPAddress.Loopback, httpsPort)
            : host is "127.0.0.1" or "localhost" ? new IPEndPoint(IPAddress.Loopback, port)
            : throw new HttpRequestException(HttpRequestError.NameResolutionError, $"{host} does not resolve in the test network");
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(target, cancellationToken);
            var stream = new TrackedStream(socket, s => _open.TryRemove(s, out _));
            _open[stream] = $"{host}:{port}";
            lock (_open)
            {
                _peakOpenToStores = Math.Max(_peakOpenToStores, _open.Values.Count(c => c.EndsWith(".myshopify.com:443", StringComparison.Ordinal)));
            }

            return stream;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}

/// <summary>A connection that says when the service closes it.</summary>
internal sealed class TrackedStream(Socket socket, Action<TrackedStream> closed) : NetworkStream(socket, ownsSocket: true)
{
    protected override void Dispose(bool disposing)
    {
        closed(this);
        base.Dispose(disposing);
    }
}
