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

    public static string ConnectionString(string url) => DatabaseUrl.Parse(url).ConnectionString;

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

    private static string Run(string command, string dir)
    {
        using var process = Process.Start(new ProcessStartInfo("bash", [Repo.File("scripts", "pg.sh"), command, dir])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode == 0 ? output : throw new InvalidOperationException($"scripts/pg.sh {command} failed: {error}");
    }

    public static NpgsqlConnection OpenAdmin(string database = "postgres")
    {
        var builder = DatabaseUrl.Parse(AdminUrl);
        builder.Database = database;
        builder.Pooling = false;
        var connection = new NpgsqlConnection(builder.ConnectionString);
        connection.Open();
        return connection;
    }
}
