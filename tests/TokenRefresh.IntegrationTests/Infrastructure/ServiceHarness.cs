using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using TokenRefresh.FakePlatforms;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// The service as production wires it (AddTokenRefresh), on a fresh database, against the fake platforms at their
/// production URLs (https://api.etsy.com, https://{shop}.myshopify.com, https://api.ebay.com), with every log record
/// captured: in process through <see cref="PlatformNetwork"/>, and for the CLI and the Function app started as
/// processes through <see cref="Proxy"/>, whose environment (HTTPS_PROXY, the test CA) <see cref="Settings"/> hold.
/// </summary>
public sealed class ServiceHarness : IAsyncDisposable
{
    private ServiceHarness(FakePlatformServer fake, TestDatabase db, Dictionary<string, string?> settings)
    {
        Fake = fake;
        Db = db;
        Network = new PlatformNetwork(fake.HttpsPort!.Value);
        Proxy = PlatformProxy.Start(fake);
        Settings = new Dictionary<string, string?>(settings.Concat(Proxy.Environment()));
    }

    /// <summary>Where the processes of the service connected (a CONNECT proxy to the fakes' TLS port).</summary>
    public PlatformProxy Proxy { get; }

    private readonly CancellationTokenSource _deadline = TestDeadline.Start();

    /// <summary>This test's deadline (<see cref="TestDeadline"/>): its cycles stop claiming at it, its processes are killed.</summary>
    public CancellationToken Deadline => _deadline.Token;

    /// <summary>Where the in-process service connected.</summary>
    public PlatformNetwork Network { get; }

    /// <summary>When true, the in-process service also uses the loopback base URLs in <see cref="Settings"/>.</summary>
    public bool UseLoopbackUrls { get; set; }

    public FakePlatformServer Fake { get; }

    public TestDatabase Db { get; }

    /// <summary>The environment the service is given; change it before <see cref="BuildHost"/>.</summary>
    public Dictionary<string, string?> Settings { get; }

    /// <summary>Services registered before AddTokenRefresh, as a host could (its TryAdd registrations then keep them).</summary>
    public Action<IServiceCollection>? BeforeWiring { get; set; }

    /// <summary>When set, the service's clock (registered before AddTokenRefresh, as a host could).</summary>
    public FakeTimeProvider? Time { get; set; }

    /// <param name="serverCertificate">What the fakes present over TLS; by default one the service trusts.</param>
    public static async Task<ServiceHarness> StartAsync(TestDatabase? database = null, X509Certificate2? serverCertificate = null)
    {
        var fake = await FakePlatformServer.StartAsync(certificate: serverCertificate ?? TestCertificates.Server);
        var db = database ?? await TestDatabase.CreateAsync();
        return new ServiceHarness(fake, db, new Dictionary<string, string?>
        {
            ["DATABASE_URL"] = db.Url,
            ["ETSY_CLIENT_ID"] = fake.Etsy.ClientId,
            ["ETSY_CLIENT_SECRET"] = fake.Etsy.SharedSecret,
            ["SHOPIFY_API_KEY"] = fake.Shopify.ApiKey,
            ["SHOPIFY_API_SECRET"] = fake.Shopify.ApiSecret,
            ["HTTP_TIMEOUT_SECONDS"] = "2",
            ["LOG_LEVEL"] = "DEBUG",
            // The cut-off's warning (an error from 2027-01-01 on) is ShopifyCutoffTests' subject, which sets its own date:
            // elsewhere it would make a test's log depend on the day the test runs.
            ["SHOPIFY_NON_EXPIRING_CUTOFF"] = "none",
        });
    }

    /// <summary>Turns eBay on (it is opt-in): the fake's credentials and scopes.</summary>
    public void UseEbay()
    {
        Settings["EBAY_CLIENT_ID"] = Fake.Ebay.ClientId;
        Settings["EBAY_CLIENT_SECRET"] = Fake.Ebay.ClientSecret;
        Settings["EBAY_SCOPES"] = Fake.Ebay.DefaultScopes;
    }

    /// <summary>Builds the host exactly as the CLI and the Function app do, plus a log collector.</summary>
    public IHost BuildHost(LogLevel minimumLevel = LogLevel.Debug)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(UseLoopbackUrls
            ? Settings
            : Settings.Where(kv => kv.Key is not ("ETSY_API_BASE_URL" or "SHOPIFY_API_BASE_URL" or "EBAY_API_BASE_URL")));
        builder.Logging.AddFakeLogging();
        if (Time is not null)
        {
            builder.Services.AddSingleton<TimeProvider>(Time);
        }

        BeforeWiring?.Invoke(builder.Services);
        builder.AddTokenRefresh();
        builder.Services.ConfigureAll<HttpClientFactoryOptions>(o => o.HttpMessageHandlerBuilderActions.Add(Network.Apply));
        builder.Logging.SetMinimumLevel(minimumLevel);
        if (minimumLevel == LogLevel.Trace)
        {
            // Everything, the framework's HTTP client logging included, for the secrets test.
            builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Trace);
            builder.Logging.AddFilter("Polly", LogLevel.Trace);
        }

        return builder.Build();
    }

    /// <summary>Runs one cycle on a new host; returns its summary (or throws) and the captured logs.</summary>
    public async Task<(CycleSummary Summary, IReadOnlyList<FakeLogRecord> Logs)> RunCycleAsync()
    {
        var (summary, logs, failure) = await TryRunCycleAsync();
        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }

        return (summary, logs);
    }

    /// <summary>As <see cref="RunCycleAsync"/>, for a cycle that may fail as a whole (the database unreachable): its failure, with the logs.</summary>
    public async Task<(CycleSummary Summary, IReadOnlyList<FakeLogRecord> Logs, CycleFailedException? Failure)> TryRunCycleAsync()
    {
        using var host = BuildHost();
        var logs = host.Services.GetFakeLogCollector();
        try
        {
            var summary = await host.Services.GetRequiredService<RefreshCycle>().RunAsync(Deadline);
            Deadline.ThrowIfCancellationRequested(); // a cycle the deadline stopped is a hang, not a result
            return (summary, logs.GetSnapshot(), null);
        }
        catch (CycleFailedException e)
        {
            return (e.Summary, logs.GetSnapshot(), e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _deadline.Dispose();
        await Proxy.DisposeAsync();
        await Fake.DisposeAsync();
        await Db.DisposeAsync();
    }
}
