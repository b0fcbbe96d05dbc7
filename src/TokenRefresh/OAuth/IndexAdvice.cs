using System.Diagnostics;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TokenRefresh.OAuth;

/// <summary>
/// The recommended index on a platform's expiry column (scripts/sql/recommended-indexes.sql), advised once a process,
/// the first time the count of due tokens is slow without it: with the exact statement to run.
/// </summary>
/// <param name="slow">A count of due tokens slower than this, without the index, has it advised (a second).</param>
internal sealed partial class IndexAdvice(TokenTable table, ILogger logger, TimeSpan? slow = null)
{
    private readonly TimeSpan _slow = slow ?? TimeSpan.FromSeconds(1);

    private int _given;

    /// <summary>The statement, as docs/database.md gives it.</summary>
    public string Statement { get; } =
        $"CREATE INDEX CONCURRENTLY {table.Name}_token_expires_at_idx ON {table.Name} (token_expires_at) WHERE refresh_token IS NOT NULL{(table.ActiveColumn is { } active ? $" AND {active}" : "")};";

    // Any index whose first column is the expiry serves the due-token queries.
    private const string ExistsSql = """
        SELECT EXISTS (
            SELECT 1 FROM pg_index i
            JOIN pg_attribute c ON c.attrelid = i.indrelid AND c.attnum = i.indkey[0]
            WHERE i.indrelid = to_regclass(@Table) AND c.attname = 'token_expires_at')
        """;

    /// <summary>Runs <paramref name="count"/>; when it was slow and the index is missing, says so, once.</summary>
    public async Task<int> TimeAsync(NpgsqlConnection connection, string platform, Func<Task<int>> count, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var due = await count();
        var took = Stopwatch.GetElapsedTime(started);
        if (took > _slow && Volatile.Read(ref _given) == 0
            && !await connection.ExecuteScalarAsync<bool>(new CommandDefinition(ExistsSql, new { Table = table.Name }, cancellationToken: cancellationToken))
            && Interlocked.Exchange(ref _given, 1) == 0)
        {
            Log.Advised(logger, platform, table.Name, took.TotalSeconds, Statement);
        }

        return due;
    }

    private static partial class Log
    {
        [LoggerMessage(116, LogLevel.Warning, "{Platform}: finding the due tokens in {Table} took {Seconds:0.0} s, a scan of the whole table each cycle; an index makes it a range scan (said once): {Statement}")]
        public static partial void Advised(ILogger logger, string platform, string table, double seconds, string statement);
    }
}
