using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Http;

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

    public static bool IsPlatformHost(string host) =>
        host is "api.etsy.com" or "api.ebay.com" || host.EndsWith(".myshopify.com", StringComparison.Ordinal);

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
        var target = IsPlatformHost(host) && port == 443 ? new IPEndPoint(IPAddress.Loopback, httpsPort)
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

/// <summary>A certificate authority made for this test run, and the platforms' server certificate it issued.</summary>
public static class TestCertificates
{
    private static readonly Lazy<(X509Certificate2 Authority, X509Certificate2 Server)> Pair = new(() => Create("TokenRefresh test CA"));
    private static readonly Lazy<(X509Certificate2 Authority, X509Certificate2 Server)> OtherPair = new(() => Create("Some other CA"));

    /// <summary>The root the service is told to trust (public part only).</summary>
    public static X509Certificate2 Authority => Pair.Value.Authority;

    /// <summary>api.etsy.com, *.myshopify.com and api.ebay.com, with its private key, for the fakes' HTTPS.</summary>
    public static X509Certificate2 Server => Pair.Value.Server;

    /// <summary>The same names, issued by a CA the service does not trust: an impostor.</summary>
    public static X509Certificate2 Impostor => OtherPair.Value.Server;

    private static (X509Certificate2, X509Certificate2) Create(string authorityName)
    {
        var now = DateTimeOffset.UtcNow;
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest($"CN={authorityName}", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));

        using var serverKey = RSA.Create(2048);
        var request = new CertificateRequest("CN=api.etsy.com", serverKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("api.etsy.com");
        names.AddDnsName("*.myshopify.com");
        names.AddDnsName("api.ebay.com");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var issued = request.Create(ca, now.AddMinutes(-5), now.AddDays(1), RandomNumberGenerator.GetBytes(16));
        using var withKey = issued.CopyWithPrivateKey(serverKey);
        // Through PKCS#12, so the key outlives this method on every platform.
        var server = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), password: null);
        return (X509CertificateLoader.LoadCertificate(ca.Export(X509ContentType.Cert)), server);
    }
}
