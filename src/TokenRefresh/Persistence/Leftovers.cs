using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// The state of accounts the main application has deleted: found by one anti-join of a platform's state rows with its
/// table's keys (compared as the key's type, so that PostgreSQL hashes the keys instead of sorting both sides on disk),
/// and removed by their primary key, at most <see cref="Batch"/> a cycle (a larger deletion takes more cycles), so that
/// token_refresh_state stays about the size of the accounts. A row under a lease is left to its holder. The search is
/// skipped while PostgreSQL's own counts say no row was deleted from the table (nor the table emptied) since a search
/// that left nothing behind, by any process: at a million accounts it is most of a steady cycle's work.
/// </summary>
internal sealed partial class Leftovers(string table, TableShape shape, string[] stateKeys)
{
    /// <summary>The most state rows one cycle removes for one platform.</summary>
    public const int Batch = 50_000;

    // Where the counts at the last search that found none are kept, for every process and replica.
    private readonly string _notice = $"leftovers_checked:{table}:{string.Join(',', stateKeys)}";

    /// <summary>
    /// The table's rows deleted since its statistics began and its file (which TRUNCATE replaces), as text, when rows
    /// are counted at all (track_counts); and what they were at the last search that found none (@Notice). A deletion
    /// shows within a second or so of its commit, at most ten: one so recent is found by the next cycle's search.
    /// </summary>
    public string DeletionsSql { get; } = $"""
        SELECT CASE WHEN current_setting('track_counts')::bool
                    THEN pg_stat_get_tuples_deleted(c.oid) || '/' || pg_relation_filenode(c.oid) END AS Now,
               (SELECT n.detail FROM token_refresh_notices n WHERE n.notice = @Notice) AS Clean
        FROM pg_class c
        WHERE c.oid = to_regclass('{table}')
        """;

    /// <summary>Keeps the counts (@Detail) a search that found none began with (@Notice, @Now).</summary>
    public const string CleanSql = """
        INSERT INTO token_refresh_notices AS n (notice, said_at, detail) VALUES (@Notice, @Now, @Detail)
        ON CONFLICT (notice) DO UPDATE SET said_at = EXCLUDED.said_at, detail = EXCLUDED.detail
        """;

    /// <summary>
    /// Finds them (parameter @Keys), leased or not: a query apart from the deletion, so that PostgreSQL may share the
    /// scans among its workers (a statement that writes runs on one).
    /// </summary>
    public string FindSql { get; } = $"""
        SELECT s.platform AS Platform, s.account_id AS AccountId
        FROM token_refresh_state s
        WHERE s.platform = ANY(@Keys)
          AND NOT EXISTS (SELECT 1 FROM {table} a WHERE {shape.Key("a")} = {shape.IdParam("s.account_id")})
        LIMIT {Batch}
        """;

    /// <summary>Removes those found (@Platforms, @Ids), by primary key, if they are still leftovers.</summary>
    public string RemoveSql { get; } = $"""
        DELETE FROM token_refresh_state s
        USING unnest(CAST(@Platforms AS text[]), CAST(@Ids AS text[])) AS gone(platform, account_id)
        WHERE s.platform = gone.platform AND s.account_id = gone.account_id AND (s.lease_until IS NULL OR s.lease_until <= @Now)
          AND NOT EXISTS (SELECT 1 FROM {table} a WHERE {shape.Key("a")} = {shape.IdParam("s.account_id")})
        """;

    /// <summary>Removes up to a batch of leftovers and says how many.</summary>
    public async Task RemoveAsync(NpgsqlConnection connection, DateTimeOffset now, string platform, ILogger logger, CancellationToken cancellationToken)
    {
        var counts = await CountsAsync(connection, cancellationToken);
        if (counts.Now is not null && counts.Now == counts.Clean)
        {
            return;
        }

        var gone = await connection.ReadRowsAsync<(string Platform, string AccountId)>(
            new CommandDefinition(FindSql, new { Keys = stateKeys }, cancellationToken: cancellationToken));
        var removed = gone.Count == 0 ? 0 : await connection.ExecuteAsync(new CommandDefinition(RemoveSql, new
        {
            Platforms = gone.Select(g => g.Platform).ToArray(), Ids = gone.Select(g => g.AccountId).ToArray(), Now = now,
        }, cancellationToken: cancellationToken));
        if (removed > 0)
        {
            Log.Removed(logger, platform, removed, table, gone.Count == Batch ? "; more are left for the next cycles" : "");
        }

        // Only a search that left none (none leased, none past the batch) lets the next ones wait for a deletion.
        if (counts.Now is not null && counts.Now != counts.Clean && removed == gone.Count && gone.Count < Batch)
        {
            await connection.ExecuteAsync(new CommandDefinition(CleanSql, new { Notice = _notice, Now = now, Detail = counts.Now }, cancellationToken: cancellationToken));
        }
    }

    // Before `tokenrefresh migrate` (or the grants) has given this role what it keeps them in, every cycle searches.
    private async Task<(string? Now, string? Clean)> CountsAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            return await connection.ReadRowOrDefaultAsync<(string? Now, string? Clean)>(
                new CommandDefinition(DeletionsSql, new { Notice = _notice }, cancellationToken: cancellationToken));
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedColumn or PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InsufficientPrivilege)
        {
            return (null, null);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(19, LogLevel.Information, "{Platform}: removed {Count} state rows of accounts no longer in {Table}{More}")]
        public static partial void Removed(ILogger logger, string platform, int count, string table, string more);
    }
}
