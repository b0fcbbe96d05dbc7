using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TokenRefresh.FakePlatforms;

/// <summary>
/// A fake Etsy + Shopify HTTP server on Kestrel, for integration tests, the demo and the benchmark. Requests are
/// routed by host, as the platforms are: api.etsy.com (or a loopback host) for Etsy, {name}.myshopify.com for Shopify.
/// With a certificate it also serves HTTPS, so tests call https://api.etsy.com and https://{shop}.myshopify.com
/// as production does (their DNS mapped to loopback). For the demo's loopback base URLs, /shopify/{shop}/... is
/// taken as a request to the host {shop}. The control API lives under /_fake.
/// </summary>
public sealed class FakePlatformServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly FakeHttp _http;
    private int _disposed;

    private FakePlatformServer(
        WebApplication app, FakeHttp http, FakeEtsy etsy, FakeShopify shopify, Uri baseAddress, int? httpsPort, ConcurrentQueue<string> serverNames, InFlight inFlight)
    {
        _serverNames = serverNames;
        _inFlight = inFlight;
        _app = app;
        _http = http;
        Etsy = etsy;
        Shopify = shopify;
        BaseAddress = baseAddress;
        HttpsPort = httpsPort;
        EtsyBaseUrl = baseAddress.GetLeftPart(UriPartial.Authority);
        ShopifyBaseUrl = EtsyBaseUrl + "/shopify/{shop}";
    }

    /// <summary>The actual bound address, e.g. http://127.0.0.1:54321/.</summary>
    public Uri BaseAddress { get; }

    /// <summary>BaseAddress without trailing slash; the token endpoint is {EtsyBaseUrl}/v3/public/oauth/token.</summary>
    public string EtsyBaseUrl { get; }

    /// <summary>Literally "{BaseAddress}/shopify/{shop}": the service replaces {shop} by the shop domain.</summary>
    public string ShopifyBaseUrl { get; }

    /// <summary>The loopback port serving HTTPS with the certificate given at start; null without one.</summary>
    public int? HttpsPort { get; }

    /// <summary>The server names clients asked for in their TLS handshakes (SNI), in order.</summary>
    public IReadOnlyCollection<string> ServerNames => _serverNames.ToArray();

    private readonly ConcurrentQueue<string> _serverNames;

    public FakeEtsy Etsy { get; }

    /// <summary>eBay's identity API: its token endpoint at api.ebay.com (or the loopback base URL).</summary>
    public FakeEbay Ebay { get; private init; } = null!;

    public FakeShopify Shopify { get; }

    /// <summary>Delay added before every platform response (not the control API); zero by default.</summary>
    public TimeSpan Latency
    {
        get => _http.Latency;
        set => _http.Latency = value;
    }

    /// <summary>
    /// Starts Kestrel on url (default: a free port on 127.0.0.1) and returns once it listens; with
    /// <paramref name="certificate"/>, also on a free loopback port for HTTPS (<see cref="HttpsPort"/>).
    /// </summary>
    public static async Task<FakePlatformServer> StartAsync(string url = "http://127.0.0.1:0", X509Certificate2? certificate = null, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(url);

        // The empty builder reads no appsettings: tests start many servers and file watchers add up.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        var serverNames = new ConcurrentQueue<string>();
        builder.WebHost.UseKestrelCore();
        if (certificate is null)
        {
            builder.WebHost.UseUrls(url);
        }
        else
        {
            builder.WebHost.ConfigureKestrel(kestrel =>
            {
                var uri = new Uri(url);
                kestrel.Listen(IPAddress.Parse(uri.Host), uri.Port);
                kestrel.Listen(IPAddress.Loopback, 0, listen => listen.UseHttps(new HttpsConnectionAdapterOptions
                {
                    ServerCertificateSelector = (_, name) =>
                    {
                        serverNames.Enqueue(name ?? "");
                        return certificate;
                    },
                }));
            });
        }

        builder.Services.AddRoutingCore();
        // Per-request logs would eat the benchmark's throughput; warnings and errors still show.
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        // In-process servers must not react to Ctrl+C of the test host; Program handles signals itself.
        builder.Services.AddSingleton<IHostLifetime, NoSignalLifetime>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));

        var app = builder.Build();
        var inFlight = new InFlight();
        app.Use(inFlight.TrackAsync);
        app.Use(ShopPathAsHost);
        var calls = new Concurrency();
        app.Use(calls.TrackAsync);
        app.UseRouting();
        var http = new FakeHttp(app.Lifetime.ApplicationStopping);
        var etsy = new FakeEtsy(http);
        var shopify = new FakeShopify(http);
        var ebay = new FakeEbay(http);
        etsy.MapRoutes(app);
        shopify.MapRoutes(app);
        ebay.MapRoutes(app);
        // {"ms": N}: every platform's latency from now on (a benchmark's second part, with the same accounts).
        app.MapPost("/_fake/latency", ctx => FakeHttp.HandleControlAsync(ctx, body =>
        {
            http.Latency = TimeSpan.FromMilliseconds(body.GetProperty("ms").GetInt32());
            return new JsonObject { ["latencyMs"] = http.Latency.TotalMilliseconds };
        }));
        app.MapGet("/_fake/stats", ctx => FakeHttp.WriteJsonAsync(ctx, StatusCodes.Status200OK, new JsonObject
        {
            ["etsy"] = etsy.Stats(),
            ["shopify"] = shopify.Stats(),
            ["ebay"] = ebay.Stats(),
            ["latencyMs"] = http.Latency.TotalMilliseconds,
        }.ToJsonString()));

        try
        {
            await app.StartAsync(ct);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        // With port 0 Kestrel reports the ports it actually bound.
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a)).ToList();
        var baseAddress = addresses.First(a => a.Scheme == "http");
        var httpsPort = addresses.FirstOrDefault(a => a.Scheme == "https")?.Port;
        return new FakePlatformServer(app, http, etsy, shopify, baseAddress, httpsPort, serverNames, inFlight) { _calls = calls, Ebay = ebay };
    }

    private Concurrency _calls = null!;

    /// <summary>The most requests to "etsy", "shopify" (every store together) or "all" (both) that were being handled at once.</summary>
    public int PeakConcurrent(string platform) => _calls.Peak(platform);

    /// <summary>Requests to "etsy", "shopify" or "ebay" being handled now.</summary>
    public int Concurrent(string platform) => _calls.Current(platform);

    // Requests being handled at once, per platform (by host, as the platforms are reached).
    private sealed class Concurrency
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<string, (int Current, int Peak)> _counts = new() { ["etsy"] = (0, 0), ["shopify"] = (0, 0), ["ebay"] = (0, 0), ["all"] = (0, 0) };

        public int Peak(string platform)
        {
            lock (_lock)
            {
                return _counts[platform].Peak;
            }
        }

        public int Current(string platform)
        {
            lock (_lock)
            {
                return _counts[platform].Current;
            }
        }

        public async Task TrackAsync(HttpContext ctx, RequestDelegate next)
        {
            var platform = ctx.Request.Host.Host.EndsWith(".myshopify.com", StringComparison.OrdinalIgnoreCase) ? "shopify"
                : ctx.Request.Path.StartsWithSegments("/v3") ? "etsy"
                : ctx.Request.Path.StartsWithSegments("/identity") ? "ebay"
                : null;
            if (platform is null)
            {
                await next(ctx);
                return;
            }

            lock (_lock)
            {
                foreach (var key in new[] { platform, "all" })
                {
                    var (current, peak) = _counts[key];
                    _counts[key] = (current + 1, Math.Max(peak, current + 1));
                }
            }

            try
            {
                await next(ctx);
            }
            finally
            {
                lock (_lock)
                {
                    foreach (var key in new[] { platform, "all" })
                    {
                        var (current, peak) = _counts[key];
                        _counts[key] = (current - 1, peak);
                    }
                }
            }
        }
    }

    private readonly InFlight _inFlight;

    /// <summary>Completes when no request is being handled (work goes on after a client hangs up, as on a real server).</summary>
    public Task WhenIdleAsync(TimeSpan timeout) => _inFlight.WhenIdle.WaitAsync(timeout);

    // Requests being handled, and a signal for when none is.
    private sealed class InFlight
    {
        private readonly Lock _lock = new();
        private int _count;
        private TaskCompletionSource _idle = NewIdle(done: true);

        public Task WhenIdle
        {
            get
            {
                lock (_lock)
                {
                    return _idle.Task;
                }
            }
        }

        public async Task TrackAsync(HttpContext ctx, RequestDelegate next)
        {
            lock (_lock)
            {
                if (_count++ == 0)
                {
                    _idle = NewIdle(done: false);
                }
            }

            try
            {
                await next(ctx);
            }
            finally
            {
                lock (_lock)
                {
                    if (--_count == 0)
                    {
                        _idle.TrySetResult();
                    }
                }
            }
        }

        private static TaskCompletionSource NewIdle(bool done)
        {
            var idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (done)
            {
                idle.SetResult();
            }

            return idle;
        }
    }

    // The demo's loopback base URL http://127.0.0.1:PORT/shopify/{shop}/admin/... reaches the shop's host routes.
    private static Task ShopPathAsHost(HttpContext ctx, RequestDelegate next)
    {
        if (ctx.Request.Path.StartsWithSegments("/shopify", out var rest)
            && rest.Value is { Length: > 1 } path && path.IndexOf('/', 1) is var slash and > 1)
        {
            ctx.Request.Host = new HostString(path[1..slash]);
            ctx.Request.Path = path[slash..];
        }

        return next(ctx);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class NoSignalLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}

// What both fakes share: latency, hanging, writing answers, new token material, control-API parsing.
internal sealed class FakeHttp(CancellationToken stopping)
{
    private long _latencyTicks;

    public TimeSpan Latency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _latencyTicks));
        set => Interlocked.Exchange(ref _latencyTicks, Math.Max(0, value.Ticks));
    }

    // Waits Latency; false (connection aborted) only when the server is stopping meanwhile. A client that hangs up
    // does not stop the work, as on a real server: a rotation still happens, and its answer is lost.
    public async ValueTask<bool> WaitLatencyAsync(HttpContext ctx)
    {
        var latency = Latency;
        if (latency == TimeSpan.Zero)
        {
            return true;
        }

        try
        {
            await Task.Delay(latency, stopping);
            return true;
        }
        catch (OperationCanceledException)
        {
            ctx.Abort();
            return false;
        }
    }

    // Never answers; gives up when the client leaves, the server stops (so Dispose is quick) or after 5 minutes.
    public async Task HangAsync(HttpContext ctx)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
        try
        {
            await Task.Delay(TimeSpan.FromMinutes(5), cts.Token);
        }
        catch (OperationCanceledException)
        {
            // The client or the server gave up first: nothing to answer.
        }

        ctx.Abort();
    }

    public static Task WriteJsonAsync(HttpContext ctx, int status, string json)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        return ctx.Response.WriteAsync(json);
    }

    /// <summary>Answers the faults that look the same on every platform (no answer, a cut, HTML); false for the others.</summary>
    public async Task<bool> TryWriteTransportFaultAsync(HttpContext ctx, FakeFault fault)
    {
        switch (fault)
        {
            case FakeFault.Hang:
                await HangAsync(ctx);
                return true;
            case FakeFault.ResetConnection:
                ctx.Abort();
                return true;
            case FakeFault.HugeRetryAfter:
                ctx.Response.Headers.RetryAfter = "1e308";
                await WriteJsonAsync(ctx, StatusCodes.Status429TooManyRequests, """{"error":"rate limited"}""");
                return true;
            case FakeFault.Redirect:
                ctx.Response.StatusCode = StatusCodes.Status307TemporaryRedirect;
                ctx.Response.Headers.Location = "https://attacker.example.com" + ctx.Request.Path;
                return true;
            case FakeFault.NotJson:
                await WriteNotJsonAsync(ctx);
                return true;
            default:
                return false;
        }
    }

    public static Task WriteNotJsonAsync(HttpContext ctx)
    {
        ctx.Response.StatusCode = StatusCodes.Status200OK;
        ctx.Response.ContentType = "text/html; charset=utf-8";
        return ctx.Response.WriteAsync("<html>oops</html>");
    }

    public static Task WriteTruncatedAsync(HttpContext ctx, string validJson) =>
        WriteJsonAsync(ctx, StatusCodes.Status200OK, validJson[..(validJson.Length / 2)]);

    public static string NewHex() => RandomNumberGenerator.GetHexString(24, lowercase: true);

    public static void Count(ConcurrentDictionary<string, int> counts, string key) =>
        counts.AddOrUpdate(key, 1, static (_, n) => n + 1);

    // Enum names, case-insensitive; null or empty means None.
    public static FakeFault ParseFault(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return FakeFault.None;
        }

        if (!name.All(char.IsAsciiLetter) || !Enum.TryParse<FakeFault>(name, ignoreCase: true, out var fault))
        {
            throw new ArgumentException($"Unknown fault {name}; known: {string.Join(", ", Enum.GetNames<FakeFault>())}.");
        }

        return fault;
    }

    // A property of a control-API object, by case-insensitive name.
    public static JsonElement? Property(JsonElement obj, string name)
    {
        if (obj.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException("Expected a JSON object.", nameof(obj));
        }

        foreach (var property in obj.EnumerateObject())
        {
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return property.Value;
            }
        }

        return null;
    }

    public static string? StringProperty(JsonElement obj, string name) =>
        Property(obj, name) is { ValueKind: JsonValueKind.String } value ? value.GetString() : null;

    // Reads a control-API request body, lets add run on it and answers 201 or 400 with the reason.
    public static async Task HandleControlAsync(HttpContext ctx, Func<JsonElement, JsonObject> add)
    {
        try
        {
            using var doc = await JsonDocument.ParseAsync(ctx.Request.Body);
            await WriteJsonAsync(ctx, StatusCodes.Status201Created, add(doc.RootElement).ToJsonString());
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            await WriteJsonAsync(ctx, StatusCodes.Status400BadRequest, new JsonObject { ["error"] = e.Message }.ToJsonString());
        }
    }
}
