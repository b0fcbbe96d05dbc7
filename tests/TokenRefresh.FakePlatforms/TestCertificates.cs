using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace TokenRefresh.FakePlatforms;

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
        // P-256 keys, as the platforms' CDNs serve: a handshake costs the fake server 0.03 ms of signing, not RSA-2048's 0.8 ms,
        // so on two shared cores a fake answering a Shopify store per connection takes no CPU the replicas need.
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest($"CN={authorityName}", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));

        using var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=api.etsy.com", serverKey, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("api.etsy.com");
        names.AddDnsName("*.myshopify.com");
        names.AddDnsName("api.ebay.com");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var issued = request.Create(ca, now.AddMinutes(-5), now.AddDays(1), RandomNumberGenerator.GetBytes(16));
        using var withKey = issued.CopyWithPrivateKey(serverKey);
        // Through PKCS#12, so the key outlives this method on every platform.
        var server = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), password: null);
        return (X509CertificateLoader.LoadCertificate(ca.Export(X509ContentType.Cert)), server);
    }
}
