using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// TLS as managed databases require it: a PostgreSQL with TLS on, its CA and server certificate (for "localhost")
/// made at test time with openssl; sslmode=verify-full and verify-ca with sslrootcert from DATABASE_URL, and
/// channel_binding.
/// </summary>
public sealed class DatabaseTlsTests : IAsyncLifetime
{
    private readonly PostgresServer.DedicatedCluster _cluster = PostgresServer.StartDedicated();
    private readonly DirectoryInfo _certs = Directory.CreateTempSubdirectory("tokenrefresh-db-tls-");
    private ServiceHarness _h = null!;

    public async Task InitializeAsync()
    {
        Openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=TokenRefresh test database CA");
        Openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "1", "-subj", "/CN=Some other CA");
        Openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
        await File.WriteAllTextAsync(Path.Combine(_certs.FullName, "ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
        Openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "ext.cnf");
        foreach (var file in new[] { "server.crt", "server.key" })
        {
            var target = Path.Combine(_cluster.DataDirectory, file);
            File.Copy(Path.Combine(_certs.FullName, file), target, overwrite: true);
            Run("chown", "postgres", target);
            Run("chmod", "600", target);
        }

        using (var admin = PostgresServer.OpenAdmin(adminUrl: _cluster.AdminUrl))
        {
            await using var command = new Npgsql.NpgsqlCommand(
                "ALTER SYSTEM SET ssl = on; ALTER SYSTEM SET ssl_cert_file = 'server.crt'; ALTER SYSTEM SET ssl_key_file = 'server.key'; SELECT pg_reload_conf();", admin);
            await command.ExecuteNonQueryAsync();
        }

        _h = await ServiceHarness.StartAsync(await TestDatabase.CreateOnAsync(_cluster.AdminUrl));
    }

    public async Task DisposeAsync()
    {
        await _h.DisposeAsync();
        _cluster.Dispose();
        _certs.Delete(recursive: true);
    }

    private void Openssl(params string[] args) => Run("openssl", args);

    private void Run(string program, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(program, args) { WorkingDirectory = _certs.FullName, RedirectStandardError = true, RedirectStandardOutput = true })!;
        var error = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', args)}: {error.Result}");
    }

    private string Url(string host, string query) => new UriBuilder(_h.Db.Url) { Host = host, Query = query.Replace("{certs}", _certs.FullName, StringComparison.Ordinal) }.Uri.AbsoluteUri;

    private async Task<(CycleSummary? Summary, Exception? Error, IReadOnlyList<FakeLogRecord> Logs)> CycleAsync(string databaseUrl, Func<Npgsql.NpgsqlDataSource, Task>? after = null)
    {
        _h.Settings["DATABASE_URL"] = databaseUrl;
        using var host = _h.BuildHost();
        try
        {
            var summary = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();
            await (after?.Invoke(host.Services.GetRequiredService<Npgsql.NpgsqlDataSource>()) ?? Task.CompletedTask);
            return (summary, null, host.Services.GetFakeLogCollector().GetSnapshot());
        }
        catch (CycleFailedException e)
        {
            return (null, e, host.Services.GetFakeLogCollector().GetSnapshot());
        }
    }

    [Theory]
    [InlineData("localhost", "sslmode=verify-full&sslrootcert={certs}/ca.crt")]
    [InlineData("127.0.0.1", "sslmode=verify-ca&sslrootcert={certs}/ca.crt")]
    [InlineData("localhost", "sslmode=verify-full&sslrootcert={certs}/ca.crt&channel_binding=require")]
    public async Task Cycle_VerifiedTls_RefreshesOverIt(string host, string query)
    {
        var users = await Chains.DueUsersAsync(_h, 20);
        var gone = await Chains.FineAndRevokedStoresAsync(_h);

        var encrypted = false;
        var (summary, error, logs) = await CycleAsync(Url(host, query), async db =>
        {
            // The service's own session is encrypted.
            await using var command = db.CreateCommand("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
            encrypted = (bool)(await command.ExecuteScalarAsync())!;
        });

        Assert.Null(error);
        Assert.True(encrypted);
        Assert.Equal("Etsy: 20/20 refreshed, 0 failed; Shopify: 1/2 validated, 1 deactivated, 0 failed", summary!.ToString());
        await Chains.AssertNoTokenLostAsync(_h, users);
        Assert.False((await _h.Db.GetShopifyStoreAsync(gone)).IsActive);
        Assert.DoesNotContain(logs, l => l.Message.Contains("not verified", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("localhost", "sslmode=verify-full&sslrootcert={certs}/other-ca.crt")] // issued by another CA
    [InlineData("127.0.0.1", "sslmode=verify-full&sslrootcert={certs}/ca.crt")] // the certificate is for localhost
    public async Task Cycle_CertificateNotAccepted_FailsWithAClearLine(string host, string query)
    {
        var refresh = _h.Fake.Etsy.AddAccount(1);
        await _h.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(1));

        var (_, error, logs) = await CycleAsync(Url(host, query));

        Assert.NotNull(error);
        var line = Assert.Single(logs, l => l.Message.StartsWith("Etsy: the cycle could not run: the database server's TLS certificate was refused", StringComparison.Ordinal));
        Assert.Contains("check sslrootcert (the provider's CA certificate) and the host name in DATABASE_URL", line.Message, StringComparison.Ordinal);
        Assert.IsType<System.Security.Authentication.AuthenticationException>(line.Exception!.InnerException);
        Assert.Equal(0, _h.Fake.Etsy.TotalCalls);
    }

    [Fact]
    public async Task Cycle_ChannelBindingRequiredWithoutTls_Fails()
    {
        await _h.Db.AddEtsyUserAsync(_h.Fake.Etsy.AddAccount(1), DateTimeOffset.UtcNow.AddMinutes(1));

        var (_, error, _) = await CycleAsync(Url("localhost", "sslmode=disable&channel_binding=require"));

        // Refused for the binding itself (no TLS, so no SCRAM-SHA-256-PLUS), not for any other reason a cycle can fail.
        var cause = Assert.IsAssignableFrom<Npgsql.NpgsqlException>(error?.InnerException);
        Assert.Contains("ChannelBinding is set to Require but the server doesn't support SCRAM-SHA-256-PLUS", cause.Message, StringComparison.Ordinal);
        Assert.Equal(0, _h.Fake.Etsy.TotalCalls);
    }

    [Theory]
    [InlineData("db.example.internal", "sslmode=require", true)]
    [InlineData("db.example.internal", "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt", false)]
    [InlineData("127.0.0.1", "sslmode=disable", false)]
    public async Task DataSource_ARemoteServerNotVerified_IsWarnedAboutOnce(string host, string query, bool warned)
    {
        _h.Settings["DATABASE_URL"] = Url(host, query);
        using var host1 = _h.BuildHost();

        host1.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        host1.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();

        var warnings = host1.Services.GetFakeLogCollector().GetSnapshot().Where(l => l.Message.StartsWith("The database server's certificate is not verified", StringComparison.Ordinal)).ToList();
        Assert.Equal(warned ? 1 : 0, warnings.Count);
        Assert.All(warnings, w => Assert.Equal(LogLevel.Warning, w.Level));
        await Task.CompletedTask;
    }
}
