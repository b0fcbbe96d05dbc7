using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TokenRefresh.FakePlatforms;

/// <summary>
/// The platforms as a process of the service reaches them in production, with no setting of ours: it is given
/// HTTPS_PROXY (this CONNECT proxy on loopback) and SSL_CERT_FILE (the test CA), and calls https://api.etsy.com,
/// https://{shop}.myshopify.com and https://api.ebay.com as it would anywhere. Each tunnel to a platform's name on 443
/// reaches the fakes' TLS port, so SNI, the certificate and host-name validation are the real ones; any other name is
/// refused as unresolvable. Every tunnel is recorded, and which are still open.
/// </summary>
public sealed class PlatformProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _httpsPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<string> _connections = new();
    private readonly ConcurrentDictionary<int, string> _open = new();
    private readonly Task _accepting;
    private int _next;

    private PlatformProxy(int httpsPort)
    {
        _httpsPort = httpsPort;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public static PlatformProxy Start(FakePlatformServer fake) =>
        new(fake.HttpsPort ?? throw new InvalidOperationException("The fakes listen on HTTPS only when started with a certificate."));

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Every host:port a process asked to reach, in order.</summary>
    public IReadOnlyCollection<string> Connections => _connections.ToArray();

    /// <summary>The host:port of every tunnel still open.</summary>
    public IReadOnlyCollection<string> OpenConnections => _open.Values.ToArray();

    /// <summary>A process's environment for it: the proxy for HTTPS (loopback goes direct), and the test CA as its only trust root.</summary>
    public IReadOnlyDictionary<string, string?> Environment() => new Dictionary<string, string?>
    {
        ["HTTPS_PROXY"] = $"http://127.0.0.1:{Port}",
        ["NO_PROXY"] = "127.0.0.1,localhost",
        ["SSL_CERT_FILE"] = AuthorityFile.Value,
    };

    public static bool IsPlatformHost(string host) =>
        host is "api.etsy.com" or "api.ebay.com" || host.EndsWith(".myshopify.com", StringComparison.Ordinal);

    // The test CA as PEM, once per process, in a file of its own.
    private static readonly Lazy<string> AuthorityFile = new(() =>
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("tokenrefresh-ca-").FullName, "ca.pem");
        File.WriteAllText(path, TestCertificates.Authority.ExportCertificatePem() + "\n");
        return path;
    });

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            _ = TunnelAsync(client);
        }
    }

    private async Task TunnelAsync(TcpClient client)
    {
        using var connection = client;
        var id = Interlocked.Increment(ref _next);
        try
        {
            var stream = connection.GetStream();
            var (target, said) = await ReadConnectAsync(stream);
            if (!said)
            {
                return; // opened and closed with nothing sent (a process stopping): not a connection to anywhere
            }

            _connections.Enqueue(target ?? "(not a CONNECT)");
            var (host, port) = Split(target);
            if (host is null || !IsPlatformHost(host) || port != 443)
            {
                await stream.WriteAsync("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray());
                return;
            }

            using var upstream = new TcpClient { NoDelay = true };
            await upstream.ConnectAsync(IPAddress.Loopback, _httpsPort, _stop.Token);
            await stream.WriteAsync("HTTP/1.1 200 Connection established\r\n\r\n"u8.ToArray());
            _open[id] = target!;
            var up = upstream.GetStream();
            // Either side closing ends the tunnel, as a real proxy does.
            await Task.WhenAny(stream.CopyToAsync(up, _stop.Token), up.CopyToAsync(stream, _stop.Token));
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // A tunnel cut by either side, or the proxy stopping.
        }
        finally
        {
            _open.TryRemove(id, out _);
        }
    }

    // "CONNECT host:port HTTP/1.1", then headers to an empty line; null for anything else. Said: whether anything came.
    private static async Task<(string? Target, bool Said)> ReadConnectAsync(NetworkStream stream)
    {
        var head = new StringBuilder();
        var one = new byte[1];
        while (head.Length < 8192 && !head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await stream.ReadAsync(one) == 0)
            {
                return (null, head.Length > 0);
            }

            head.Append((char)one[0]);
        }

        var line = head.ToString().Split("\r\n")[0].Split(' ');
        return (line is ["CONNECT", var target, _] ? target : null, true);
    }

    private static (string? Host, int Port) Split(string? target) =>
        target?.LastIndexOf(':') is int colon and > 0 && int.TryParse(target[(colon + 1)..], out var port) ? (target[..colon], port) : (null, 0);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        _stop.Dispose();
    }
}
