namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// A real PgBouncer (Debian's, 1.18) in front of a PostgreSQL, started with scripts/pgbouncer.sh, in transaction or
/// session pooling mode: the way teams on Supabase, Heroku, Railway or Azure reach their database.
/// </summary>
public sealed class Pooler : IDisposable
{
    private static readonly Lazy<Pooler> SharedTransaction = new(() => Start(PostgresServer.AdminUrl, "transaction"));
    private static readonly Lazy<Pooler> SharedSession = new(() => Start(PostgresServer.AdminUrl, "session"));

    private readonly string _dir;

    private Pooler(string dir, int port, string mode)
    {
        _dir = dir;
        Port = port;
        Mode = mode;
    }

    public int Port { get; }

    public string Mode { get; }

    /// <summary>One pooler of the mode in front of the tests' shared server, for the test process's life.</summary>
    public static Pooler Shared(string mode) => mode == "transaction" ? SharedTransaction.Value : SharedSession.Value;

    /// <summary>A pooler of the test's own, in front of <paramref name="serverAdminUrl"/> (for a test that restarts it).</summary>
    public static Pooler Start(string serverAdminUrl, string mode)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"tokenrefresh-pgbouncer-{Guid.NewGuid():N}");
        var url = PostgresServer.RunScript("pgbouncer.sh", "start", dir, serverAdminUrl, mode).Trim();
        var pooler = new Pooler(dir, new Uri(url).Port, mode);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => pooler.Dispose();
        return pooler;
    }

    /// <summary><paramref name="directUrl"/>, through this pooler.</summary>
    public string Through(string directUrl) => new UriBuilder(directUrl) { Port = Port }.Uri.AbsoluteUri;

    /// <summary>Stops it (every client connection is cut) and starts it again on the same port.</summary>
    /// <summary>Every client connection is cut, and the pooler is back on the same port after <paramref name="downSeconds"/>.</summary>
    public void Restart(double downSeconds = 0) =>
        PostgresServer.RunScript("pgbouncer.sh", "restart", _dir, downSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            PostgresServer.RunScript("pgbouncer.sh", "stop", _dir);
        }
    }
}
