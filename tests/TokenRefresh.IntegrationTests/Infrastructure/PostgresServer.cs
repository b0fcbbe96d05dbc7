using System.Diagnostics;
using Npgsql;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// The PostgreSQL server the tests use: the one ./scripts/test.sh started (TEST_DATABASE_ADMIN_URL),
/// or else a throwaway cluster started here with scripts/pg.sh and stopped when the test process exits.
/// </summary>
internal static class PostgresServer
{
    private static readonly Lazy<string> AdminUrlValue = new(StartOrReuse);

    /// <summary>A superuser postgresql:// URL (with a generated password) to the server's "postgres" database.</summary>
    public static string AdminUrl => AdminUrlValue.Value;

    /// <summary>The tests' own connections, named apart from the service's in pg_stat_activity.</summary>
    public static string ConnectionString(string url)
    {
        var builder = DatabaseUrl.Parse(url);
        builder.ApplicationName = "tokenrefresh-tests";
        return builder.ConnectionString;
    }

    private static string StartOrReuse()
    {
        if (Environment.GetEnvironmentVariable("TEST_DATABASE_ADMIN_URL") is { Length: > 0 } url)
        {
            return url;
        }

        var dir = Path.Combine(Path.GetTempPath(), $"tokenrefresh-tests-{Environment.ProcessId}");
        var started = Run("start", dir);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Run("stop", dir);
        return started.Trim();
    }

    /// <summary>A cluster of its own, for a test that restarts the server (the shared one serves tests in parallel).</summary>
    public static DedicatedCluster StartDedicated()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"tokenrefresh-dedicated-{Guid.NewGuid():N}");
        return new DedicatedCluster(dir, Run("start", dir).Trim());
    }

    public sealed class DedicatedCluster(string dir, string adminUrl) : IDisposable
    {
        public string AdminUrl { get; } = adminUrl;

        /// <summary>The cluster's data directory (owned by the postgres user), e.g. for TLS key files.</summary>
        public string DataDirectory => Path.Combine(dir, "data");

        /// <summary>A fast restart: every session is cut, and the server is back on the same port after <paramref name="downSeconds"/>.</summary>
        public void Restart(double downSeconds = 0) =>
            RunScript("pg.sh", "restart", dir, downSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));

        public int Port => new Uri(AdminUrl).Port;

        /// <summary>The server stops answering, as a frozen host would: its processes stopped (SIGSTOP); connections stay open.</summary>
        public void Pause() => SignalAll("STOP");

        /// <summary>The server's processes go on (SIGCONT).</summary>
        public void Resume() => SignalAll("CONT");

        // The postmaster (the first line of postmaster.pid) and every process it started.
        private void SignalAll(string signal)
        {
            var postmaster = File.ReadLines(Path.Combine(DataDirectory, "postmaster.pid")).First().Trim();
            using var children = Process.Start("pkill", [$"-{signal}", "-P", postmaster])!;
            children.WaitForExit();
            using var main = Process.Start("kill", [$"-{signal}", postmaster])!;
            main.WaitForExit();
        }

        public void Dispose() => Run("stop", dir);
    }

    private static string Run(string command, string dir) => RunScript("pg.sh", command, dir);

    /// <summary>Runs one of the repository's scripts/ and returns its standard output; throws with its standard error if it fails.</summary>
    public static string RunScript(string script, params string[] args)
    {
        var (code, output, error) = ProcessOutput.Run(new ProcessStartInfo("bash", [Repo.File("scripts", script), .. args]));
        return code == 0 ? output : throw new InvalidOperationException($"scripts/{script} {args[0]} failed: {error}");
    }

    public static NpgsqlConnection OpenAdmin(string database = "postgres", string? adminUrl = null)
    {
        var builder = DatabaseUrl.Parse(adminUrl ?? AdminUrl);
        builder.ApplicationName = "tokenrefresh-tests";
        builder.Database = database;
        builder.Pooling = false;
        var connection = new NpgsqlConnection(builder.ConnectionString);
        connection.Open();
        return connection;
    }
}
