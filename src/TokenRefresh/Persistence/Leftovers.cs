using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// The state of accounts the main application has deleted: found by one anti-join of a platform's state rows with its
/// table's keys (compared as the key's type: as text, PostgreSQL sorted both sides on disk, 6 s at a million rows; now
/// a hash of the keys, 1.5 s), and removed by their primary key, at most <see cref="Batch"/> a cycle (a larger deletion takes more
/// cycles), so that token_refresh_state stays about the size of the accounts. A row under a lease is left to its holder.
/// </summary>
internal sealed partial class Leftovers(string table, TableShape shape, string[] stateKeys)
{
    /// <summary>The most state rows one cycle removes for one platform.</summary>
    public const int Batch = 50_000;

    /// <summary>The statement, whole (parameters @Keys, @Now).</summary>
    public string Sql { get; } = $"""
        WITH gone AS (
            SELECT s.platform, s.account_id
            FROM token_refresh_state s
            WHERE s.platform = ANY(@Keys) AND (s.lease_until IS NULL OR s.lease_until <= @Now)
              AND NOT EXISTS (SELECT 1 FROM {table} a WHERE {shape.Key("a")} = {shape.IdParam("s.account_id")})
            LIMIT {Batch}),
        removed AS (
            DELETE FROM token_refresh_state s USING gone
            WHERE s.platform = gone.platform AND s.account_id = gone.account_id
            RETURNING 1)
        SELECT count(*)::int FROM removed
        """;

    /// <summary>Removes up to a batch of leftovers and says how many, in one autocommit statement.</summary>
    public async Task RemoveAsync(NpgsqlConnection connection, DateTimeOffset now, string platform, ILogger logger, CancellationToken cancellationToken)
    {
        var removed = await connection.ExecuteScalarAsync<int>(new CommandDefinition(Sql, new { Keys = stateKeys, Now = now }, cancellationToken: cancellationToken));
        if (removed > 0)
        {
            Log.Removed(logger, platform, removed, table, removed == Batch ? "; more are left for the next cycles" : "");
        }
    }

    private static partial class Log
    {
        [LoggerMessage(19, LogLevel.Information, "{Platform}: removed {Count} state rows of accounts no longer in {Table}{More}")]
        public static partial void Removed(ILogger logger, string platform, int count, string table, string more);
    }
}
