using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.FakePlatforms;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// Secrets stay secret: every path that handles one runs here, and everything the service emits (log records with
/// their state, scopes and exceptions; the CLI's stdout and stderr; the OTLP metric payloads) is scanned for every
/// token (old and new), both client secrets and the database passwords (raw and percent-encoded), whole or any 12 characters of them.
/// </summary>
public sealed class SecretScanTests : HarnessTests
{
    private readonly List<string> _secrets = [];

    private async Task<(Guid Id, string Refresh)> EtsyUserAsync(int minutes, string? fault = null)
    {
        var refresh = H.Fake.Etsy.AddAccount(Random.Shared.Next(1_000, 9_999_999));
        var access = $"etsy-access-{Guid.NewGuid():N}";
        _secrets.AddRange([refresh, access]);
        if (fault is not null)
        {
            H.Fake.Etsy.SetFault(refresh, Enum.Parse<FakeFault>(fault));
        }

        return (await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(minutes), access), refresh);
    }

    private async Task<Guid> StoreAsync(string shop)
    {
        var token = $"shpat_{Guid.NewGuid():N}";
        _secrets.Add(token);
        H.Fake.Shopify.AddStore(shop, token);
        return await H.Db.AddShopifyStoreAsync(shop, token);
    }

    [Fact]
    public async Task EveryPathThatHandlesASecret_LeavesNoSecretInAnyOutput()
    {
        await H.Db.AddExpiringColumnsAsync();
        H.Settings["HTTP_TIMEOUT_SECONDS"] = "2";
        var (_, fine) = await EtsyUserAsync(1);
        await EtsyUserAsync(1, nameof(FakeFault.InvalidGrant));
        await EtsyUserAsync(1, nameof(FakeFault.ServerError));
        await EtsyUserAsync(1, nameof(FakeFault.Hang));
        var (notStored, _) = await EtsyUserAsync(1);
        var (retried, _) = await EtsyUserAsync(1);
        var (forced, _) = await EtsyUserAsync(50);
        // The pair of one account is refused by the database for good (received but not stored), another's once (retried).
        await H.Db.ExecuteAsync($$"""
            CREATE SEQUENCE conflict_once;
            CREATE FUNCTION write_faults() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
            BEGIN
                IF OLD.user_id = '{{notStored}}' THEN RAISE EXCEPTION 'injected failure'; END IF;
                IF OLD.user_id = '{{retried}}' AND nextval('conflict_once') = 1 THEN RAISE EXCEPTION 'injected conflict' USING ERRCODE = '40001'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER write_faults BEFORE UPDATE ON etsy_users FOR EACH ROW EXECUTE FUNCTION write_faults();
            """);
        await StoreAsync("valid.myshopify.com");
        await StoreAsync("gone.myshopify.com");
        H.Fake.Shopify.RevokeAccessToken("gone.myshopify.com");
        await StoreAsync("migrating.myshopify.com");
        // eBay: a user refreshed, one that eBay fails, one whose grant is revoked; its secret travels in the Authorization header.
        await H.Db.AddEbayTableAsync();
        H.UseEbay();
        foreach (var fault in new FakeFault?[] { null, FakeFault.ServerError, FakeFault.InvalidGrant })
        {
            var ebayRefresh = H.Fake.Ebay.AddUser();
            _secrets.Add(ebayRefresh);
            if (fault is { } f)
            {
                H.Fake.Ebay.SetFault(ebayRefresh, f);
            }

            await H.Db.AddEbayUserAsync(ebayRefresh, DateTimeOffset.UtcNow.AddMinutes(1), DateTimeOffset.UtcNow.AddDays(400));
        }

        _secrets.AddRange([H.Fake.Ebay.ClientSecret, Convert.ToBase64String(Encoding.UTF8.GetBytes($"{H.Fake.Ebay.ClientId}:{H.Fake.Ebay.ClientSecret}"))]);

        // A store whose non-expiring token Shopify refuses, at validation and at the exchange alike.
        await StoreAsync("refused.myshopify.com");
        H.Fake.Shopify.SetFault("refused.myshopify.com", FakeFault.NonExpiringRefused);
        var (expiringAccess, expiringRefresh) = H.Fake.Shopify.AddExpiringStore("expiring.myshopify.com");
        _secrets.AddRange([expiringAccess, expiringRefresh]);
        await H.Db.AddExpiringStoreAsync("expiring.myshopify.com", expiringAccess, expiringRefresh, DateTimeOffset.UtcNow.AddMinutes(1), DateTimeOffset.UtcNow.AddDays(9));
        await using var otlp = new OtlpReceiver();
        H.Settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.Endpoint;
        H.Settings["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";

        // The cycle in process, everything logged, metrics exported when the host is disposed.
        var records = new List<FakeLogRecord>();
        using (var host = H.BuildHost(LogLevel.Trace))
        {
            Assert.NotNull(host.Services.GetService<OpenTelemetry.Metrics.MeterProvider>());
            await host.Services.GetRequiredService<RefreshCycle>().RunAsync().ContinueWith(_ => { }, TaskScheduler.Default);
            records.AddRange(host.Services.GetFakeLogCollector().GetSnapshot());
        }

        // The operators' commands, as processes.
        var cli = new List<(int Code, string Stdout, string Stderr)>
        {
            await CliProcess.RunAsync(["refresh", "--etsy-user", forced.ToString()], H.Settings),
            await CliProcess.RunAsync(["refresh", "--shop", "valid.myshopify.com"], H.Settings),
            await CliProcess.RunAsync(["status"], H.Settings),
            await CliProcess.RunAsync(["status", "--json"], H.Settings),
            await CliProcess.RunAsync(["shopify", "migrate-expiring", "--shop", "migrating.myshopify.com", "--yes"], H.Settings),
        };
        var all = await CliProcess.RunAsync(["shopify", "migrate-expiring", "--all", "--yes"], H.Settings);

        // A database that refuses the connection, with a password that percent-encoding changes, in process and as a process.
        const string password = "p@ss:w/rd%#secret-1234";
        var badUrl = $"postgresql://owner:{Uri.EscapeDataString(password)}@127.0.0.1:1/app?connect_timeout=2";
        _secrets.AddRange([password, Uri.EscapeDataString(password)]);
        var badSettings = new Dictionary<string, string?>(H.Settings) { ["DATABASE_URL"] = badUrl };
        cli.Add(await CliProcess.RunAsync(["once"], badSettings));
        var original = H.Settings["DATABASE_URL"];
        H.Settings["DATABASE_URL"] = badUrl;
        using (var host = H.BuildHost(LogLevel.Trace))
        {
            await Assert.ThrowsAsync<CycleFailedException>(() => host.Services.GetRequiredService<RefreshCycle>().RunAsync());
            records.AddRange(host.Services.GetFakeLogCollector().GetSnapshot());
        }

        H.Settings["DATABASE_URL"] = original;

        // Every path ran.
        Assert.Contains(records, r => r.Level == LogLevel.Critical && r.Message.Contains("received but not stored", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Message.Contains("the rotated pair was stored after 2 attempts", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Message.Contains("failed (timeout", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Message.Contains("failed (invalid_grant", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Message.Contains("deactivated (unauthorized_401)", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Message.Contains("Shopify expiring store expiring.myshopify.com", StringComparison.Ordinal) && r.Message.EndsWith("refreshed", StringComparison.Ordinal));
        Assert.Contains(records, r => r.Exception is Npgsql.NpgsqlException);
        Assert.Equal(0, cli[0].Code);
        Assert.Equal(0, cli[4].Code);
        Assert.Contains("migrated migrating.myshopify.com", cli[4].Stdout, StringComparison.Ordinal);
        Assert.Contains(records, r => r.Message.Contains("refused.myshopify.com", StringComparison.Ordinal) && r.Message.Contains("non_expiring_token_refused", StringComparison.Ordinal));
        Assert.Contains("refused refused.myshopify.com", all.Stdout, StringComparison.Ordinal);
        Assert.Contains(records, r => r.Message.StartsWith("eBay account", StringComparison.Ordinal) && r.Message.Contains("failed (invalid_grant", StringComparison.Ordinal));
        cli.Add(all);
        Assert.Equal(2, cli[5].Code);
        Assert.Contains(otlp.Received, r => r.Path == "/v1/metrics" && r.Body.Length > 0);

        // The tokens issued meanwhile are secrets too.
        foreach (var old in _secrets.ToList())
        {
            if (H.Fake.Etsy.IssuedFor(old) is { } issued)
            {
                _secrets.AddRange([issued.AccessToken, issued.RefreshToken]);
            }
        }

        foreach (var shop in new[] { "expiring.myshopify.com", "migrating.myshopify.com" })
        {
            _secrets.AddRange([H.Fake.Shopify.CurrentAccessToken(shop)!, H.Fake.Shopify.CurrentRefreshToken(shop)!]);
        }

        _secrets.AddRange([H.Fake.Etsy.SharedSecret, H.Fake.Shopify.ApiSecret, H.Db.Password]);
        // eBay's access tokens issued meanwhile.
        var ebayAccess = await H.Db.QueryAsync<string>("SELECT access_token FROM ebay_users WHERE access_token <> 'old-ebay-access-token'");
        Assert.NotEmpty(ebayAccess);
        _secrets.AddRange(ebayAccess);
        Assert.Contains(H.Fake.Etsy.IssuedFor(fine)!.Value.RefreshToken, _secrets);

        var outputs = new List<(string Where, string Text)>();
        foreach (var r in records)
        {
            outputs.Add(($"log {r.Category} {r.Id}", string.Join('\n',
                r.Message, r.Exception?.ToString(),
                string.Join('\n', r.StructuredState?.Select(kv => $"{kv.Key}={kv.Value}") ?? []),
                string.Join('\n', r.Scopes.Select(s => s?.ToString())),
                string.Join('\n', r.Scopes.OfType<IEnumerable<KeyValuePair<string, object>>>().SelectMany(s => s.Select(kv => $"{kv.Key}={kv.Value}"))))));
        }

        outputs.AddRange(cli.Select((c, i) => ($"CLI command {i}", c.Stdout + "\n" + c.Stderr)));
        outputs.AddRange(otlp.Received.Select(r => ($"OTLP {r.Path}", Encoding.UTF8.GetString(r.Body) + Encoding.Latin1.GetString(r.Body))));
        Assert.True(records.Count > 40, $"only {records.Count} log records");
        foreach (var secret in _secrets.Distinct())
        {
            Assert.True(secret.Length >= 8, "every secret here is long enough not to match by chance");
            foreach (var (at, fragment) in Fragments(secret))
            {
                var leak = outputs.FirstOrDefault(o => o.Text.Contains(fragment, StringComparison.Ordinal));
                Assert.True(leak.Where is null, $"characters {at} to {at + fragment.Length} of a secret of length {secret.Length} appeared in {leak.Where}");
            }
        }
    }

    // A part of a secret leaks it too (a token cut short, or masked in part): every run of 12 characters, or a shorter secret whole.
    private static IEnumerable<(int At, string Fragment)> Fragments(string secret) =>
        Enumerable.Range(0, Math.Max(1, secret.Length - FragmentLength + 1)).Select(i => (i, secret.Substring(i, Math.Min(FragmentLength, secret.Length))));

    private const int FragmentLength = 12;
}
