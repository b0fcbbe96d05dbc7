using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// The state of accounts the main application has deleted: found by one anti-join of a platform's state rows with its
/// table's keys (compared as the key's type, so that PostgreSQL hashes the keys instead of sorting both sides on disk),
/// and removed by their primary key, at most <see cref="Batch"/> a cycle (a larger deletion takes more cycles), so that
/// token_refresh_state stays about the size of the accounts. A row under a lease is left to its holder. The pass is
/// skipped while PostgreSQL's own counts say no row was deleted from the table (nor the table emptied) since a pass that
/// left nothing behind: at a million accounts it is most of a steady cycle's work.
/// </summary>
internal sealed partial class Leftovers(string table, TableShape shape, string[] stateKeys)
{
    /// <summary>The most state rows one cycle removes for one platform.</summary>
    public const int Batch = 50_000;

    // What the counts said before the last pass that left nothing behind; null until one has (each process looks once).
    private (long Deleted, long File)? _clean;

    /// <summary>
    /// The table's rows deleted since its statistics began, and its file (which TRUNCATE replaces); whether rows are
    /// counted at all (track_counts). A deletion shows within a second or so of its commit, at most ten: one so recent
    /// is found by the next cycle's pass.
    /// </summary>
    public string DeletionsSql { get; } = $"""
        SELECT pg_stat_get_tuples_deleted(c.oid) AS Deleted, pg_relation_filenode(c.oid)::bigint AS File,
               current_setting('track_counts')::bool AS Counted
        FROM pg_class c
        WHERE c.oid = to_regclass('{table}')
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
        var counts = await connection.ReadRowOrDefaultAsync<(long Deleted, long File, bool Counted)>(new CommandDefinition(DeletionsSql, cancellationToken: cancellationToken));
        if (counts.Counted && _clean == (counts.Deleted, counts.File))
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

        // Only a pass that left none (none leased, none past the batch) lets the next ones wait for a deletion.
        _clean = removed == gone.Count && gone.Count < Batch ? (counts.Deleted, counts.File) : null;
    }

    private static partial class Log
    {
        [LoggerMessage(19, LogLevel.Information, "{Platform}: removed {Count} state rows of accounts no longer in {Table}{More}")]
        public static partial void Removed(ILogger logger, string platform, int count, string table, string more);
    }
}
